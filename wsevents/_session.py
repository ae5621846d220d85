"""The async layer around one connection's core: the receive loop, the writer, ASGI ``send``.

A :class:`Session` drives a :class:`~wsevents._protocol.ConnectionCore`:
it reads ASGI messages and hands each frame to the core, calls the handler
the core names, and sends what the core says to send. :meth:`Session.transmit`
is the only place that calls ASGI ``send`` for a connection (the accept, every
frame, the close frames), always awaited whole by one task: a reply in the
receive loop's, a push with nothing queued ahead of it in a task that sends
a publication's frames one after another (``_fanout``: on Python 3.12+ an
eager task, in the publisher's step), anything else in the one writer task.
A frame is handled in the task that read it; when its handler waits,
reading passes to a new task (:class:`~wsevents._receiving.Receiving`), at
most ``Limits.concurrency`` handlers at once.

Over 300 lines: the per-frame path (receive loop, handler call, reply, the one
``send``) kept in one class, so that a frame crosses no module boundary.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from time import monotonic
from typing import TYPE_CHECKING, Any

from starlette.types import Message, Scope, Send

from ._calls import Handling
from ._connection import Connection
from ._credentials import Credentials, refresh
from ._dispatch import Router
from ._fanout import push_all
from ._outcomes import Close, ConnectionState, Pushed
from ._protocol import ConnectionCore
from ._receiving import Receiving
from ._routing import Channel
from ._tasks import deadline
from .codecs import Codec
from .exceptions import CloseCode

if TYPE_CHECKING:
    from ._history import Position
    from ._registry import Registry
    from ._runtime import Runtime
    from ._stats import Stats
    from ._subscriptions import Declared
    from ._telemetry import Telemetry

__all__ = ["Session"]

logger = logging.getLogger("wsevents")


Frame = str | bytes
_OPEN, _CLOSED = ConnectionState.OPEN, ConnectionState.CLOSED
_SEND, _QUEUED, _OVERFLOWED = Pushed.SEND, Pushed.QUEUED, Pushed.OVERFLOWED


class Session(Receiving):
    """One WebSocket connection, driven: its core, its writer, its receive loop.

    The broker and the topic table hold sessions; handlers get
    :attr:`connection`, the public face of the same connection.
    """

    __slots__ = (
        "_cancels",
        "_core",
        "_fanned",
        "_finishing",
        "_frame_key",
        "_handling",
        "_ok",
        "_runtime",
        "_send",
        "_task",
        "_tracing",
        "_wakeup",
        "_watched",
        "_writer",
        "channel",
        "client_session",
        "codec",
        "connection",
        "credentials",
        "emitted",
        "id",
        "loop",
        "registry",
        "resume",
    )

    def __init__(
        self,
        runtime: Runtime,
        connection_id: str,
        channel: Channel,
        send: Send,
        codec: Codec,
        router: Router,
        registry: Registry,
        *,
        scope: Scope,
        params: dict[str, Any],
        subprotocol: str | None,
        resume: dict[str, Position] | None = None,
        client_session: str | None = None,
    ) -> None:
        self.id = connection_id
        self.client_session = client_session  # wsevents-session, as the client named it
        # The positions the client named in wsevents-resume, each used by one subscribe.
        self.resume = resume
        self.channel = channel
        self.codec = codec
        # The events the channel declares: pushes are validated against them.
        self.emitted: Mapping[str, Declared] = channel.emitted
        self.registry = registry  # the app's, as it was at the handshake
        self._runtime = runtime
        self._core = ConnectionCore(router, runtime.limits, runtime.stats)
        self._send = send
        self._frame_key = "bytes" if codec.frame_type == "binary" else "text"
        # The counter every handled frame adds to: its channel's.
        self._ok = runtime.stats.ok_counter(channel.address)
        self._tracing = runtime.telemetry  # None: off
        self._writer: asyncio.Task[None] | None = None
        # The rest of a pushed frame's send that had to wait (the client's transport paused).
        self._finishing: asyncio.Task[None] | None = None
        # A fan-out that starts in the loop's next turn (3.10, 3.11) took the send:
        # frames pushed meanwhile wait for it to send them, not for the writer.
        self._fanned = False
        self._wakeup: asyncio.Future[None] | None = None  # what the idle writer waits on
        # In the runtime's watched set: a send may be under way, or credentials expire.
        self._watched = False
        self._task: asyncio.Task[Any] | None = None  # the receive loop's, once accepted
        self.loop: asyncio.AbstractEventLoop | None = None  # set once accepted
        self._cancels = 0  # cancellations of _task that abort asked for
        self._handling = Handling()  # the tasks that read and handle, besides _task
        # The user and expiry, where a hook set one (most connections: none).
        self.credentials: Credentials | None = None
        self.connection: Connection = Connection(runtime.app, self, scope, params, subprotocol)

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.channel.address!r} {self.state.value}>"

    @property
    def state(self) -> ConnectionState:
        """Where the connection is in its life."""
        return self._core.state

    @property
    def close_code(self) -> int | None:
        """The code the connection ended with, once it ended."""
        return self._core.close_code

    @property
    def stats(self) -> Stats:
        """The app's counters."""
        return self._runtime.stats

    @property
    def tracing(self) -> Telemetry | None:
        """The app's telemetry, where it is on."""
        return self._tracing

    @property
    def user(self) -> str | None:
        """The user the connection belongs to, or ``None``."""
        credentials = self.credentials
        return None if credentials is None else credentials.user

    def credentials_to_set(self) -> Credentials:
        """The credentials, made on first use: only the handshake may set the user."""
        if self.credentials is None:
            self.credentials = Credentials()
        return self.credentials

    def expire_at(self, expires_at: float | None) -> None:
        """Close with 4401 at ``expires_at`` (UNIX seconds, checked), or never (``None``)."""
        self.credentials_to_set().expires_at = expires_at
        if expires_at is not None:
            self._watch_me()

    def _watch_me(self) -> None:
        """Have the watchdog look at this connection until it has nothing to time out."""
        if not self._watched:
            self._watched = True
            self._runtime.watched.add(self)

    @property
    def backlogged(self) -> bool:
        """Whether the send queue is at least half full."""
        return self._core.backlogged

    # -- frames out ------------------------------------------------------------------

    def resume_position(self, topic: str) -> Position | None:
        """The position the client asked to resume ``topic`` from (``wsevents-resume``), once."""
        return self.resume.pop(topic, None) if self.resume else None

    def push(self, frame: Frame) -> bool:
        """Send a frame without waiting (:func:`~wsevents._fanout.push_all`); whether to yield."""
        return push_all(((self, frame),))

    def take(self, frame: Frame) -> Message | None:
        """Take a frame to push: the ASGI message to send now, else ``None`` (queued or dropped).

        The caller that gets a message must :meth:`transmit` it, in a task of
        its own (the core counts it as sending).
        """
        pushed = self._core.push(frame)
        if pushed is _SEND:
            return {"type": "websocket.send", self._frame_key: frame}
        if pushed is _QUEUED:
            if not self._fanned:
                self._wake()
        elif pushed is _OVERFLOWED:
            self._aborted()
        return None

    def fanned(self) -> None:
        """A fan-out that starts later took this connection's send; it sends what queues."""
        self._fanned = True

    def next_queued(self) -> Message | None:
        """The next queued frame for the fan-out that took the send, now sending; or ``None``."""
        item = self._core.next_item()
        if item is None:
            return None
        if item.__class__ is Close:
            code, reason = item
            return {"type": "websocket.close", "code": code, "reason": reason}
        return {"type": "websocket.send", self._frame_key: item}

    def released(self) -> None:
        """The fan-out is done with this connection: the writer takes what queues from now on."""
        self._fanned = False
        if self._core.queued and not self._core.sending:
            self._wake()

    def left_waiting(self, task: asyncio.Task[None]) -> None:
        """A send of this connection waits in ``task``: an abort cancels it there.

        What queues behind it is the writer's, once it is sent; the watchdog
        times it (a fan-out's send that did not wait needs no look).
        """
        self._watch_me()
        self._fanned = False
        self._finishing = task
        task.add_done_callback(self._pushed)

    def _pushed(self, task: asyncio.Task[None]) -> None:
        if self._finishing is task:
            self._finishing = None

    def push_replay(self, frame: Frame) -> None:
        """Queue a frame of a history replay: it does not count against ``send_queue``."""
        if self._core.push_replay(frame) is _QUEUED:
            self._wake()

    async def send_frame(self, frame: Frame) -> None:
        """Send an encoded frame now if nothing is queued ahead of it, else queue it."""
        if self._core.send_now():
            await self.transmit({"type": "websocket.send", self._frame_key: frame})
        else:
            self.push(frame)

    def close(self, code: int, reason: str) -> None:
        """Close once the frames already queued are sent."""
        if self._core.close(code, reason):
            self._wake()

    def abort(self, code: int, reason: str) -> None:
        """Drop the connection now: stop sending, stop the receive loop, close with ``code``.

        Safe from any callback; the receive loop ends, closes and runs the hooks.
        """
        if self._core.abort(code, reason):
            self._aborted()

    def _aborted(self, *, stop_loop: bool = True, level: int = logging.WARNING) -> None:
        close = self._core.aborted
        assert close is not None
        logger.log(level, "closing connection %s with %d: %s", self.id, close.code, close.reason)
        for writing in (self._writer, self._finishing):
            if writing is not None:
                writing.cancel()
        self._gone()
        task = self._task
        # The receive loop is cancelled even from inside itself (a failed reply):
        # the cancellation ends it at its next await, and serve takes it back.
        if stop_loop and task is not None and not task.done():
            self._cancels += 1
            task.cancel()

    def _wake(self) -> None:
        """Let the writer take what the outbox holds: start it, or end its wait."""
        waiting = self._wakeup
        if waiting is not None:
            self._wakeup = None
            if not waiting.done():
                waiting.set_result(None)
        elif self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        # One writer per connection that has ever queued a frame, never one per frame;
        # it waits on a bare future, the cheapest wake asyncio has.
        loop = asyncio.get_running_loop()
        while True:
            message = self.next_queued()
            if message is None:
                waiting = self._wakeup = loop.create_future()
                await waiting
            else:
                await self.transmit(message)

    async def transmit(self, message: Message, fan_out: bool = False) -> None:
        """Hand one message to ASGI ``send``: the only place that calls it for a connection.

        The accept, every frame, and the close frames (queued or an abort's)
        all come here, in the task that awaits this from its start to its
        end. The core has taken the send (``accepting``, ``send_now``,
        ``push``, ``next_item`` or ``abort_close``) before this; a frame whose
        connection was aborted or ended since is dropped. The watchdog looks
        at the connection from now until it finds no send under way; a
        ``fan_out``'s send only once it waits (:meth:`left_waiting`).
        """
        core = self._core
        ended = core.aborted is not None or core.state is _CLOSED
        if ended and message["type"] == "websocket.send":
            return  # taken before the end (a fan-out's, on 3.10 and 3.11): dropped
        if not fan_out and not self._watched:
            self._watch_me()
        try:
            await self._send(message)
        except BaseException as exc:
            self._send_raised(exc)
            return
        if core.sent() and not self._fanned:
            self._wake()

    def _send_raised(self, exc: BaseException) -> None:
        """Tell the core how a send ended that raised ``exc``; a cancellation goes on."""
        if isinstance(exc, OSError):  # the client went away; the receive loop sees it
            self._core.send_failed()
        elif isinstance(exc, Exception):
            logger.error("sending to connection %s failed", self.id, exc_info=exc)
            self._core.send_failed()
            self.abort(CloseCode.INTERNAL_ERROR, "internal error")
        else:  # cancelled mid-send: an abort, or the host
            self._core.sent()
            raise exc

    # -- topics ------------------------------------------------------------------------

    async def subscribe(self, topic: str, presence: Any = None) -> None:
        """Subscribe to a topic or pattern (checked by the caller); once closed, ignore it."""
        if self._core.state is not _CLOSED:
            limit = self._runtime.limits.max_subscriptions
            await self._runtime.broker.subscribe(self, topic, presence, limit=limit)

    async def unsubscribe(self, topic: str) -> None:
        """Stop hearing ``topic``; a topic not subscribed to is ignored."""
        await self._runtime.broker.unsubscribe(self, topic)

    @property
    def topics(self) -> frozenset[str]:
        """The topics and patterns subscribed to."""
        return self._runtime.broker.topics_of(self)

    # -- the receive loop --------------------------------------------------------------

    async def send_accept(self, subprotocol: str | None) -> None:
        """Send the handshake's accept; if the send fails, :meth:`accepted` says so."""
        self._core.accepting()
        await self.transmit({"type": "websocket.accept", "subprotocol": subprotocol})

    def accepted(self, task: asyncio.Task[Any] | None) -> bool:
        """Take the handshake as done; return whether the connection is open.

        Frames queued by the ``on_connect`` hooks go out now; a connection whose
        queue overflowed during them is aborted as soon as it is accepted.
        """
        self._task = task
        self.loop = asyncio.get_running_loop()
        if not self._core.accept(monotonic()):
            return False  # aborted during on_connect: logged then
        if self._core.queued:
            self._wake()
        return True

    # -- the end -----------------------------------------------------------------------

    def watch(self, now: float, wall: float) -> bool:
        """Let the core look at its timeouts, and close or refresh expiring credentials.

        The watchdog calls this a few times a second, with the monotonic and
        the UNIX time. Returns whether it should go on looking: ``False`` once
        no send is under way and no credentials expire (it forgets the
        connection until the next send).
        """
        core = self._core
        if core.check_time(now) is not None:
            self._aborted()
            return self._still_watched(False)
        credentials = self.credentials
        if credentials is None or credentials.expires_at is None or core.state is not _OPEN:
            return self._still_watched(core.sending)
        if credentials.expired(wall):
            self.stats.closed[CloseCode.CREDENTIALS_EXPIRED] += 1
            logger.info("closing connection %s with 4401: credentials expired", self.id)
            self.close(CloseCode.CREDENTIALS_EXPIRED, "credentials expired")
            return self._still_watched(core.sending)
        expires_at = credentials.due(wall)
        if expires_at is not None:
            credentials.start(refresh(self, credentials, expires_at))
        return True

    def _still_watched(self, watched: bool) -> bool:
        self._watched = watched
        return watched

    def host_cancelled(self) -> bool:
        """Account for a cancellation of the receive loop: whether the host asked for one too.

        Aborts cancel the loop; those are taken back here (Python 3.11+ counts
        them). What remains was the host's (a timeout around the app, a server
        giving up at shutdown), which must go on once the teardown is done.
        """
        task, cancels, self._cancels = self._task, self._cancels, 0
        uncancel = getattr(task, "uncancel", None)
        if uncancel is None:  # Python 3.10 counts nothing: a cancel with no abort is the host's
            return self._core.aborted is None
        for _ in range(cancels):
            uncancel()
        return bool(task.cancelling())  # type: ignore[union-attr]

    async def send_abort_close(self) -> int | None:
        """Send the close frame of an abort, giving a stalled client ``send_timeout`` to take it.

        Returns its code, or ``None`` when the connection was not aborted.
        """
        close = self._core.aborted
        if close is None:
            return None
        self._task = None  # from here on, nothing cancels this task for an abort
        if self._core.abort_close() is None:
            return close.code  # the close frame went out already
        message = {"type": "websocket.close", "code": close.code, "reason": close.reason}
        try:
            async with deadline(self._runtime.limits.send_timeout):
                await self.transmit(message)
        except TimeoutError:  # a client that never reads again
            logger.info("connection %s did not take its close frame", self.id)
        return close.code

    async def going_away(self) -> int | None:
        """The host cancelled the connection (a server's graceful timeout): close with 1001.

        An abort that came first keeps its own code. Returns the code sent, or
        ``None`` when the close frame had already gone out.
        """
        if self._core.abort(CloseCode.GOING_AWAY, "server shutting down"):
            self._aborted(stop_loop=False, level=logging.INFO)
        return await self.send_abort_close()

    async def finish(self, code: int) -> None:
        """The connection ended: stop the writer, drop every subscription."""
        self._task = None
        self._core.disconnected(code)
        self._gone()
        if self.credentials is not None:
            self.credentials.stop()
        writing = [task for task in (self._writer, self._finishing) if task is not None]
        self._writer = self._finishing = None
        for task in writing:
            task.cancel()
        await asyncio.gather(*writing, return_exceptions=True)
        await self._runtime.broker.leave_all(self)
