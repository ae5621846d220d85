"""Connection: one client, its state, its send queue and its subscriptions."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from enum import Enum
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic_core import to_jsonable_python
from starlette.datastructures import Address, Headers, QueryParams, State
from starlette.requests import cookie_parser
from starlette.types import Message, Scope, Send

from ._envelope import event_frame
from ._topics import check_pattern
from .codecs import Codec, JSONCodec, MessagePackCodec
from .exceptions import CloseCode, TopicError

if TYPE_CHECKING:
    from ._app import EventApp
    from ._routing import Channel

__all__ = ["Connection", "ConnectionState"]

logger = logging.getLogger("wsevents")


class ConnectionState(Enum):
    """Where a connection is in its life; every transition checks it."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSING = "closing"
    CLOSED = "closed"


# The members the per-frame path compares with, as plain names: an Enum
# attribute costs a class lookup each time.
_CONNECTED, _CLOSING, _CLOSED = (
    ConnectionState.CONNECTED,
    ConnectionState.CLOSING,
    ConnectionState.CLOSED,
)


class _Close(NamedTuple):
    code: int
    reason: str


Frame = str | bytes


class Connection:
    """One WebSocket client of a channel.

    Handlers receive it by annotating a parameter ``Connection``.

    Attributes:
        id: a unique id, for ``EventApp.send_to``.
        channel: the :class:`Channel` it connected to.
        params: the path parameters, converted.
        state: a namespace for your own per-connection data (``conn.state.user``).
        subprotocol: the negotiated subprotocol, or ``None`` (JSON).
    """

    __wsevents_connection__ = True
    # Slots: a server holds many idle connections, and a dict each costs memory.
    __slots__ = (
        "_asgi_send",
        "_frame_key",
        "_headers",
        "_queue",
        "_sending",
        "_state",
        "_topics",
        "_wakeup",
        "_writer",
        "abort_close",
        "app",
        "binary_decoder",
        "binary_pass",
        "channel",
        "close_code",
        "codec",
        "connection_state",
        "id",
        "json_pass",
        "last_frame",
        "params",
        "refused",
        "refused_since",
        "scope",
        "send_started",
        "subprotocol",
        "task",
        "text_decoder",
        "tokens",
        "tokens_at",
    )

    def __init__(
        self,
        app: EventApp,
        channel: Channel,
        scope: Scope,
        send: Send,
        params: dict[str, Any],
        codec: Codec,
        subprotocol: str | None,
    ) -> None:
        # The node id first: send_to finds the process that holds a connection by it.
        self.id = f"{app.node_id}-{uuid.uuid4().hex[:20]}"
        self.app = app
        self.channel = channel
        self.scope = scope
        self.params = params
        self.subprotocol = subprotocol
        self._state: State | None = None  # made on first use: most connections never need one
        self.codec = codec
        self.text_decoder, self.binary_decoder = app.codecs.decoders(codec)
        # Frames in plain JSON or MessagePack to a channel with flat models: one
        # pass from the payload (see _onepass).
        one_pass = channel.one_pass
        text_codec, binary_codec = type(self.text_decoder), type(self.binary_decoder)
        self.json_pass = one_pass.text_pass if text_codec is JSONCodec else None
        self.binary_pass = one_pass.binary_pass if binary_codec is MessagePackCodec else None
        self.connection_state = ConnectionState.CONNECTING
        self.close_code: int | None = None
        self._asgi_send = send
        self._frame_key = "bytes" if codec.frame_type == "binary" else "text"
        self._queue: deque[Frame | _Close] = deque()
        self._sending = False
        self._wakeup: asyncio.Event | None = None  # made with the writer, if ever
        self._writer: asyncio.Task[None] | None = None
        self._topics: set[str] | None = None  # made on the first subscribe
        self._headers: Headers | None = None
        # Limits: the watchdog reads these; the per-frame path only writes them.
        self.task: asyncio.Task[Any] | None = None  # the receive loop's
        self.abort_close: _Close | None = None
        # When the watchdog first saw the send under way (0: none is, or it has not
        # looked yet); the send itself only clears it, so no clock is read per frame.
        self.send_started = 0.0
        self.last_frame = 0.0
        self.tokens = float(app.limits.burst)
        self.tokens_at = 0.0
        self.refused = 0
        self.refused_since = 0.0

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.channel.address!r} {self.connection_state.value}>"

    @property
    def state(self) -> State:
        """A namespace for your own per-connection data: ``conn.state.user = ...``."""
        if self._state is None:
            self._state = State()
        return self._state

    @property
    def headers(self) -> Headers:
        """The handshake's HTTP headers, case-insensitive."""
        if self._headers is None:
            self._headers = Headers(scope=self.scope)
        return self._headers

    @property
    def query_params(self) -> QueryParams:
        """The query string's parameters."""
        return QueryParams(self.scope.get("query_string", b""))

    @property
    def cookies(self) -> dict[str, str]:
        """The handshake's cookies."""
        return cookie_parser(self.headers.get("cookie", ""))

    @property
    def client(self) -> Address | None:
        """The client's ``(host, port)``, when the server knows it."""
        client = self.scope.get("client")
        return Address(*client) if client else None

    @property
    def topics(self) -> frozenset[str]:
        """The topics this connection is subscribed to."""
        return frozenset(self._topics or ())

    async def send(self, event: str, data: Any = None) -> None:
        """Send ``event`` with ``data`` to this client.

        ``data`` is validated against the model of an event the channel
        ``emits`` (a model instance or a dict), and sent as it is otherwise.
        A connection that has closed drops it.

        Raises:
            PayloadError: ``data`` does not match the declared model.
        """
        await self.send_frame(self.encode_event(event, data))

    def encode_event(self, event: str, data: Any) -> Frame:
        """Encode a push for this client, validated against the channel's ``emits``."""
        emit = self.channel.emitted.get(event)
        payload = to_jsonable_python(data) if emit is None else emit.dump(data)
        return self.codec.encode(event_frame(event, payload))

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection once the frames already queued are sent."""
        if self.connection_state is ConnectionState.CONNECTING:
            raise RuntimeError("cannot close a connection before it is accepted: raise Reject")
        if self.connection_state is not ConnectionState.CONNECTED:
            return
        self.connection_state = ConnectionState.CLOSING
        close = _Close(int(code), reason)
        if self._sending or self._queue:
            self._queue.append(close)
            self._wake()
        else:
            await self._transmit(close)

    async def subscribe(self, topic: str) -> None:
        """Subscribe to ``topic``, or to an MQTT pattern: ``rooms/+``, ``alerts/#``.

        The client hears what is published to matching topics in every
        process, once per message however many of its subscriptions match.

        Raises:
            TopicError: ``topic`` is not a valid topic or pattern, or the
                connection holds ``Limits.max_subscriptions`` already.
        """
        check_pattern(topic)
        if self._topics is None:
            self._topics = set()
        if topic in self._topics:
            return
        limit = self.app.limits.max_subscriptions
        if len(self._topics) >= limit:
            raise TopicError(f"cannot subscribe to {topic!r}: the limit is {limit} subscriptions")
        self._topics.add(topic)
        await self.app.join(topic, self)

    async def unsubscribe(self, topic: str) -> None:
        """Stop hearing ``topic``; a topic not subscribed to is ignored."""
        if self._topics and topic in self._topics:
            self._topics.discard(topic)
            await self.app.leave(topic, self)

    async def publish(self, topic: str, event: str, data: Any = None) -> None:
        """Publish to every subscriber of ``topic``, this connection included."""
        await self.app.publish(topic, event, data)

    # -- internals: the receive loop and the app call these ----------------------

    async def send_frame(self, frame: Frame) -> None:
        """Send an encoded frame now if nothing is queued ahead of it, else queue it."""
        if self.connection_state is not _CONNECTED or self._sending or self._queue:
            self.push(frame)
        else:
            await self._transmit(frame)

    def push(self, frame: Frame) -> None:
        """Queue an encoded frame without waiting: publishers use this.

        A connection whose queue is full is a slow consumer: it is aborted with
        1013, and nobody waits for it.
        """
        state = self.connection_state
        if state is _CLOSING or state is _CLOSED:
            return
        if len(self._queue) >= self.app.limits.send_queue:
            self.app.counters.slow_consumers_dropped += 1
            self.abort(CloseCode.TRY_AGAIN_LATER, "send queue full")
            return
        self._queue.append(frame)
        if state is _CONNECTED:
            self._start_writer()

    @property
    def sending(self) -> bool:
        """Whether a frame is being handed to the server now."""
        return self._sending

    @property
    def backlogged(self) -> bool:
        """Whether the send queue is at least half full."""
        return len(self._queue) * 2 >= self.app.limits.send_queue

    def abort(self, code: int, reason: str) -> None:
        """Drop the connection now: stop sending, stop the receive loop, close with ``code``.

        Safe from any callback; the receive loop ends, closes and runs the hooks.
        """
        if self.abort_close is not None or self.connection_state is ConnectionState.CLOSED:
            return
        logger.warning("closing connection %s with %d: %s", self.id, code, reason)
        self.app.counters.closed[code] += 1
        self.abort_close = _Close(int(code), reason)
        self.connection_state = ConnectionState.CLOSING
        self._queue.clear()
        if self._writer is not None:
            self._writer.cancel()
        if self.task is not None:  # the receive loop, even when it aborts itself
            self.task.cancel()

    def accepted(self) -> None:
        """Mark the handshake done; frames queued during ``on_connect`` go out now."""
        self.connection_state = ConnectionState.CONNECTED
        if self._queue:
            self._start_writer()

    def _start_writer(self) -> None:
        if self._writer is None:
            self._wakeup = asyncio.Event()
            self._writer = asyncio.get_running_loop().create_task(self._drain(self._wakeup))
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
        elif self.connection_state is ConnectionState.CONNECTED or self._queue:
            self._start_writer()

    async def _drain(self, wakeup: asyncio.Event) -> None:
        # One writer per connection that has ever queued a frame, never one per frame.
        while True:
            await wakeup.wait()
            wakeup.clear()
            while self._queue and not self._sending:
                await self._transmit(self._queue.popleft())

    async def _transmit(self, item: Frame | _Close) -> None:
        if self.connection_state is ConnectionState.CLOSED:
            return
        message: Message
        if isinstance(item, _Close):
            self.connection_state = ConnectionState.CLOSING
            message = {"type": "websocket.close", "code": item.code, "reason": item.reason}
        else:
            message = {"type": "websocket.send", self._frame_key: item}
        self._sending = True
        try:
            await self._asgi_send(message)
        except OSError:  # the client went away; the receive loop sees the disconnect
            self._queue.clear()
            self.connection_state = ConnectionState.CLOSING
        finally:
            self._sending = False
            self.send_started = 0.0
        if self._queue:
            self._wake()

    async def closed(self, code: int) -> None:
        """Tear down after the disconnect: drop subscriptions, stop the writer."""
        self.connection_state = ConnectionState.CLOSED
        self.close_code = code
        topics, self._topics = self._topics or set(), None
        for topic in topics:
            await self.app.leave(topic, self)
        self._queue.clear()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
