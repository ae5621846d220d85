"""The connection core: one connection's state, outbox, close and abort, without I/O.

Modelled on ``websockets``' sans-I/O ``protocol.py``: this object never
awaits and never touches a socket. Frames come in (:meth:`ConnectionCore.receive`)
and outcomes come out: a handler to call, an error frame to send, or nothing
because the frame closed the connection (too big, too many refused). A frame
to send (:meth:`~ConnectionCore.push`) goes out at once when nothing is ahead
of it, else into a bounded outbox, from which the one writer takes them
(:meth:`~ConnectionCore.next_item`); one send at a time. Every method
that changes the state checks it first, and these methods are the only place
that changes it::

    CONNECTING --accept--> OPEN --close/abort/send failed--> CLOSING --disconnected--> CLOSED
        |                                                       ^
        +---------------- abort (during on_connect) ------------+

The async layer (:mod:`wsevents._session`) drives it: it reads ASGI
messages, calls handlers, and is the only caller of ASGI ``send``.

Over 300 lines: the whole state machine and its limits in one object, so that
no other module changes a connection's state.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from ._dispatch import Answer, Call, Refusal, Router, byte_size
from ._outcomes import (
    Answered,
    Close,
    ConnectionState,
    InvalidState,
    Pushed,
    Replayed,
    TooManyRequests,
)
from .exceptions import CloseCode

if TYPE_CHECKING:
    from ._limits import Limits
    from ._stats import Stats

__all__ = ["ConnectionCore"]

RATE_WINDOW = 10.0  # refusals are counted over this many seconds

Frame = str | bytes

# The members the per-frame path compares with, as plain names: an Enum
# attribute costs a class lookup each time.
_CONNECTING, _OPEN, _CLOSING, _CLOSED = ConnectionState
_SEND, _QUEUED, _HELD, _DROPPED, _OVERFLOWED = Pushed


class ConnectionCore:
    """One connection's state machine; no I/O.

    Attributes:
        state: the :class:`ConnectionState`.
        aborted: the close frame of an abort, once aborted (the async layer
            sends it instead of whatever was queued).
        close_code: the code the connection ended with, once closed.
        sending: whether a frame is with ASGI ``send`` now.
    """

    __slots__ = (
        "_accepted",
        "_asked",
        "_asks",
        "_binary_pass",
        "_handlers",
        "_inbox",
        "_limits",
        "_max_bytes",
        "_measure_above",
        "_outbox",
        "_rated",
        "_replayed",
        "_stats",
        "_text_pass",
        "aborted",
        "close_code",
        "close_sent",
        "last_frame",
        "left",
        "refused",
        "refused_since",
        "router",
        "running",
        "send_started",
        "sending",
        "state",
        "tokens",
        "tokens_at",
    )

    def __init__(self, router: Router, limits: Limits, stats: Stats) -> None:
        self.router = router
        self._text_pass, self._binary_pass = router.text_pass, router.binary_pass
        self._handlers = router.handlers
        self._stats = stats  # the app's counters: this object only adds to them
        self.state = _CONNECTING
        self._accepted = False
        self.aborted: Close | None = None
        self.close_code: int | None = None
        self.close_sent = False  # a close frame went to ASGI send (or is with it now)
        self.sending = False
        # Made on the first frame queued: most connections of a busy server are idle,
        # and an empty deque costs more than the rest of the core.
        self._outbox: deque[Frame | Close | Replayed] | None = None
        self._replayed = 0  # Replayed items in the outbox
        self._limits = limits
        self._rated = limits.rate is not None
        self._max_bytes = limits.max_message_bytes
        # A character takes at most 4 bytes in UTF-8: only longer frames are measured.
        self._measure_above = limits.max_message_bytes // 4
        # When the watchdog first saw the send under way (0: none is, or it has not
        # looked yet): the send itself only clears it, so no clock is read per frame.
        self.send_started = 0.0
        self.last_frame = 0.0
        self.tokens = float(limits.burst)
        self.tokens_at = 0.0
        self.refused = 0
        self.refused_since = 0.0
        # Frames handled now (at most Limits.concurrency), and those waiting their
        # turn, in order; made on the first that waits.
        self.running = 0
        self._inbox: deque[Call | Refusal] | None = None
        # The server requests open, by ask, each with what waits for its answer.
        self._asks: dict[str, Any] | None = None
        self._asked = 0  # requests made so far: the next ask is "q<this + 1>"
        self.left = False  # the client's disconnect arrived

    def __repr__(self) -> str:
        return f"<ConnectionCore {self.state.value}, {len(self._outbox or ())} queued>"

    # -- the handshake and the end ---------------------------------------------------

    def accepting(self) -> None:
        """The handshake's accept is going to ASGI ``send`` now: the first send of all."""
        if self._accepted or self.sending or self.state is _CLOSED:
            raise InvalidState(f"cannot send the accept of a connection that is {self.state.value}")
        self.sending = True

    def accept(self, now: float) -> bool:
        """Take the handshake as done; return whether the connection is open.

        A connection aborted during its ``on_connect`` hooks (its queue
        overflowed) stays aborted: it closes as soon as it is accepted.
        """
        if self._accepted or self.state is _OPEN or self.state is _CLOSED:
            raise InvalidState(f"cannot accept a connection that is {self.state.value}")
        self._accepted = True
        self.last_frame = self.tokens_at = now
        if self.state is _CLOSING:  # aborted during on_connect, or the accept's send failed
            return False
        self.state = _OPEN
        return True

    def close(self, code: int, reason: str) -> bool:
        """Queue a close frame after the frames already queued; return whether it was queued."""
        state = self.state
        if state is _CONNECTING:
            raise InvalidState("cannot close a connection before it is accepted: raise Reject")
        if state is not _OPEN:
            return False
        self.state = _CLOSING
        self._queue(Close(int(code), reason))
        return True

    def abort(self, code: int, reason: str) -> bool:
        """Drop what is queued and close with ``code``; return whether this call aborted it.

        The first abort wins; a closed connection cannot be aborted.
        """
        if self.aborted is not None or self.state is _CLOSED:
            return False
        self._stats.closed[code] += 1
        self.aborted = Close(int(code), reason)
        self.state = _CLOSING
        self._outbox = None
        self._replayed = 0
        self._inbox = None
        return True

    def client_left(self) -> None:
        """The client's disconnect arrived: no answer can come, nothing can be asked.

        The frames that arrived before it are still handled (:meth:`handled`).
        """
        self.left = True

    def disconnected(self, code: int) -> None:
        """The connection ended (either side): drop whatever is still queued."""
        if self.state is _CLOSED:
            raise InvalidState("the connection is closed already")
        self.state = _CLOSED
        self.close_code = code
        self._outbox = None
        self._replayed = 0
        self._inbox = None

    # -- frames out ------------------------------------------------------------------

    def push(self, frame: Frame) -> Pushed:
        """Take a frame to send; never waits.

        ``SEND``: nothing is queued or being sent, so the caller sends it now
        (it is sending: :meth:`sent` ends it), with no hand-off to the writer.
        ``QUEUED``: it waits in the outbox for the writer. A full outbox is a
        slow consumer: the connection is aborted with 1013.
        """
        state = self.state
        if state is _OPEN:
            outbox = self._outbox
            if not outbox and not self.sending:
                self.sending = True
                return _SEND
            if len(outbox or ()) - self._replayed < self._limits.send_queue:
                self._queue(frame)
                return _QUEUED
        elif state is _CONNECTING:
            if len(self._outbox or ()) - self._replayed < self._limits.send_queue:
                self._queue(frame)
                return _HELD
        else:
            return _DROPPED
        self._stats.slow_consumers_dropped += 1
        self.abort(CloseCode.TRY_AGAIN_LATER, "send queue full")
        return _OVERFLOWED

    def push_replay(self, frame: Frame) -> Pushed:
        """Queue a frame of a history replay: never an overflow, however many."""
        state = self.state
        if state is _CLOSING or state is _CLOSED:
            return _DROPPED
        self._queue(Replayed(frame))
        self._replayed += 1
        return _QUEUED if state is _OPEN else _HELD

    def _queue(self, item: Frame | Close | Replayed) -> None:
        if self._outbox is None:
            self._outbox = deque()
        self._outbox.append(item)

    def send_now(self) -> bool:
        """Whether a frame may go to ASGI ``send`` now, ahead of the writer; if so, it is sending.

        It may when the connection is open, nothing is being sent and nothing
        is queued: otherwise it must be pushed, to keep the order.
        """
        if self.state is _OPEN and not self.sending and not self._outbox:
            self.sending = True
            return True
        return False

    def next_item(self) -> Frame | Close | None:
        """The next frame or close frame for the writer, now sending; ``None``: nothing to send."""
        if self.sending or not self._outbox or self.state is _CONNECTING:
            return None
        self.sending = True
        item = self._outbox.popleft()
        if item.__class__ is Replayed:
            self._replayed -= 1
            return item.frame
        if item.__class__ is Close:
            self.close_sent = True
        return item  # type: ignore[return-value]

    def abort_close(self) -> Close | None:
        """The close frame of an abort, to send now (it is sending); ``None``: none to send.

        ``None`` when the connection was not aborted, or a close frame went
        out already (a close queued before the abort, sent by the writer).
        """
        if self.aborted is None or self.close_sent or self.state is _CLOSED:
            return None
        self.close_sent = self.sending = True
        return self.aborted

    def sent(self) -> bool:
        """The send under way ended; return whether more waits in the outbox."""
        self.sending = False
        self.send_started = 0.0
        return bool(self._outbox) and self.state is not _CONNECTING

    def send_failed(self) -> None:
        """The transport refused a send: the client is gone; nothing more is sent."""
        self.sending = False
        self.send_started = 0.0
        self._outbox = None
        self._replayed = 0
        if self.state is _OPEN or self.state is _CONNECTING:
            self.state = _CLOSING

    @property
    def queued(self) -> bool:
        """Whether frames wait in the outbox for the writer."""
        return bool(self._outbox) and self.state is not _CONNECTING

    @property
    def backlogged(self) -> bool:
        """Whether the outbox is at least half full."""
        return len(self._outbox or ()) * 2 >= self._limits.send_queue

    # -- frames in -------------------------------------------------------------------

    def receive(self, payload: str | bytes, now: float) -> Call | Refusal | Answered | None:
        """Turn a frame from the client into a handler to call, an error frame to send,
        or the answer to an open server request.

        ``None``: nothing to do (the connection is closing, this frame closed
        it, or it was an answer nobody waits for: dropped and counted). An
        answer that is awaited does not count against ``rate``.
        """
        self.last_frame = now
        if self.state is not _OPEN:
            return None
        if len(payload) > self._measure_above and byte_size(payload) > self._max_bytes:
            self.abort(CloseCode.MESSAGE_TOO_BIG, "message too big")
            return None
        if self._asks:
            answer = self.router.answer(payload)
            if answer is not None and answer.ask in self._asks:
                return self._answered(answer)
        if self._rated and not self._take_token(now):
            self._stats.rate_limited += 1
            if self.refused > self._limits.burst:
                self.abort(CloseCode.POLICY_VIOLATION, "rate limit exceeded")
                return None
            return self.router.rate_limited(payload)
        fast = self._text_pass if payload.__class__ is str else self._binary_pass
        if fast is not None:
            found = fast(payload)
            if found is not None:
                event, data, request_id, trace = found
                return self._handlers[event], data, request_id, trace
        routed = self.router.route(payload)
        if isinstance(routed, Answer):
            if self._asks and routed.ask in self._asks:
                return self._answered(routed)
            self._stats.answers_dropped += 1
            return None
        return routed

    # -- frames handled while others arrive ---------------------------------------------

    def admit(self, found: Call | Refusal) -> bool:
        """Take a frame to handle: ``True``, handle it now (it counts as running).

        ``False``: it waits its turn (:meth:`handled` gives it), or the
        connection was aborted with 1008 because ``Limits.receive_queue``
        frames wait already.
        """
        if self.state is not _OPEN:
            return False
        if self.running < self._limits.concurrency:
            self.running += 1
            return True
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = deque()
        if len(inbox) >= self._limits.receive_queue:
            self.abort(CloseCode.POLICY_VIOLATION, "too many frames waiting to be handled")
            return False
        inbox.append(found)
        return False

    def handled(self) -> Call | Refusal | None:
        """A frame was handled: the next one waiting (for the same task), or ``None``."""
        inbox = self._inbox
        if inbox and self.state is _OPEN:
            return inbox.popleft()
        self.running -= 1
        return None

    # -- server requests -------------------------------------------------------------

    def ask(self, waiter: Any) -> str:
        """Open a server request; return its ``ask``; ``waiter`` goes with its :class:`Answered`.

        Raises:
            InvalidState: the connection is not open.
            TooManyRequests: ``Limits.max_requests`` are open already.
        """
        if self.state is not _OPEN or self.left:
            raise InvalidState(f"cannot ask a connection that is {self.state.value}")
        asks = self._asks
        if asks is None:
            asks = self._asks = {}
        elif len(asks) >= self._limits.max_requests:
            raise TooManyRequests(
                f"{len(asks)} requests are open on this connection (Limits.max_requests)"
            )
        self._asked += 1
        ask = f"q{self._asked}"
        asks[ask] = waiter
        return ask

    def forget(self, ask: str) -> None:
        """The request ``ask`` is over (answered, timed out, given up): an answer now is late."""
        if self._asks:
            self._asks.pop(ask, None)

    def end_asks(self) -> list[Any]:
        """The waiters of every open request, now that no answer can come; none stays open."""
        asks, self._asks = self._asks, None
        return list(asks.values()) if asks else []

    def _answered(self, answer: Answer) -> Answered:
        waiter = self._asks.pop(answer.ask)  # type: ignore[union-attr]
        return Answered(waiter, answer.event, answer.data)

    def _take_token(self, now: float) -> bool:
        """Take one token from the bucket (``rate`` per second, ``burst`` deep)."""
        limits = self._limits
        rate: Any = limits.rate
        tokens = min(float(limits.burst), self.tokens + (now - self.tokens_at) * rate)
        self.tokens_at = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        if now - self.refused_since > RATE_WINDOW:
            self.refused_since, self.refused = now, 0
        self.refused += 1
        return False

    # -- time ------------------------------------------------------------------------

    def check_time(self, now: float) -> Close | None:
        """Look at the send and idle timeouts; abort and return the close if one ran out.

        Called a few times a second by the watchdog: a send is timed from the
        first look that finds it under way.
        """
        limits = self._limits
        started = self.send_started
        close: Close | None = None
        if self.sending and not started:
            self.send_started = now
        elif started and now - started > limits.send_timeout:
            close = Close(CloseCode.TRY_AGAIN_LATER, "send timed out: the client is not reading")
        elif (
            self.state is _OPEN
            and limits.idle_timeout is not None
            and now - self.last_frame > limits.idle_timeout
        ):
            close = Close(CloseCode.NORMAL_CLOSURE, "idle")
        if close is not None and self.abort(*close):
            return close
        return None
