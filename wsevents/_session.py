"""One WebSocket from handshake to teardown: hooks, the receive loop, dispatch, limits.

Split from ``_app`` so that the per-frame path reads in one place. Per frame
it decodes, checks the rate, routes, validates, calls and answers, and
creates no task (unless ``Limits.concurrency`` asks for more than one frame
at a time).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from time import monotonic
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
from anyio.to_thread import run_sync
from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from starlette.types import Receive, Scope, Send

from ._connection import _CONNECTED, Connection, ConnectionState
from ._envelope import BadEnvelope, RequestId, error_frame, parse_envelope
from ._routing import Channel, Handler, Hook
from .codecs import Codec
from .exceptions import CloseCode, DecodeError, DuplicateKeyError, ErrorCode, EventError, Reject

if TYPE_CHECKING:
    from ._app import EventApp
    from ._limits import Limits

__all__ = ["Sessions"]

logger = logging.getLogger("wsevents")

WATCH_INTERVAL = 0.25  # seconds between checks of send and idle timeouts
RATE_WINDOW = 10.0  # refusals are counted over this many seconds
CLOSE_GRACE = 1.0  # how long an aborted connection's close frame may take
TEARDOWN_LIMIT = 5.0  # how long the on_disconnect hooks of one connection may take


class Refusal(NamedTuple):
    """An error frame to answer a frame with."""

    code: str
    message: str
    details: Any
    request_id: RequestId
    event: str | None = None


class Sessions:
    """Serves the WebSockets of one app."""

    def __init__(self, app: EventApp) -> None:
        self.app = app
        self.limits = app.limits
        self.stats = app.counters
        self.ok = app.counters.events_ok
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def limits(self) -> Limits:
        """The limits every connection runs under."""
        return self._limits

    @limits.setter
    def limits(self, limits: Limits) -> None:
        self._limits = limits
        # What the per-frame path reads, as plain attributes.
        self._rated = limits.rate is not None
        self._max_bytes = limits.max_message_bytes
        self._measure_above = limits.max_message_bytes // 4

    # -- a connection, from the handshake to the teardown ----------------------------

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one WebSocket connection, from ``websocket.connect`` to the hooks after it."""
        conn = await self._open(scope, receive, send)
        if conn is None:
            return
        code: int = CloseCode.GOING_AWAY
        try:
            try:
                if self.limits.concurrency > 1:
                    code = await self._receive_concurrently(conn, receive)
                else:
                    # The receive loop runs in this frame: each frame wakes the task,
                    # and every coroutine between it and receive() costs a step twice.
                    dispatch = self.dispatch
                    connected = ConnectionState.CONNECTED
                    idle = self.limits.idle_timeout is not None
                    while True:
                        message = await receive()
                        kind = message["type"]
                        if kind == "websocket.receive":
                            if idle:
                                conn.last_frame = monotonic()
                            if conn.connection_state is connected:
                                text = message.get("text")
                                if text is not None:
                                    await dispatch(conn, text, conn.text_decoder)
                                else:
                                    payload = message.get("bytes") or b""
                                    await dispatch(conn, payload, conn.binary_decoder)
                        elif kind == "websocket.disconnect":
                            code = int(message.get("code") or 1005)
                            break
                        else:
                            raise unexpected(kind)
            except Exception:
                logger.exception("connection %s to %r failed", conn.id, conn.channel.address)
                await conn.close(CloseCode.INTERNAL_ERROR, "internal error")
                code = CloseCode.INTERNAL_ERROR
        except asyncio.CancelledError:
            # Aborted (a slow consumer, a send timeout, idle, stop): close with its
            # code. Otherwise the server gave up waiting for a busy handler at
            # shutdown: tear down cleanly (the hooks still run), not raise out of the app.
            _uncancel()
            close = conn.abort_close
            if close is not None:
                code = close.code
                message = {"type": "websocket.close", "code": code, "reason": close.reason}
                try:  # a client that does not read may never take it
                    await asyncio.wait_for(send(message), CLOSE_GRACE)
                except asyncio.CancelledError:
                    _uncancel()
                except Exception:
                    pass
        finally:
            conn.task = None  # from here on, an abort must not cancel the teardown
            # Shielded, so that a host that cancels us (a server's graceful
            # timeout, a test client leaving its block) still gets every hook
            # run once; bounded, so that a hook that hangs cannot hang it.
            with anyio.CancelScope(shield=True, deadline=anyio.current_time() + TEARDOWN_LIMIT):
                await self.app.disconnected(conn, code)

    async def _open(self, scope: Scope, receive: Receive, send: Send) -> Connection | None:
        """Take ``websocket.connect``, route, check, run the hooks and accept; or refuse."""
        app = self.app
        message = await receive()
        if message["type"] != "websocket.connect":
            raise RuntimeError(
                f'Expected ASGI message "websocket.connect", but got {message["type"]!r}'
            )
        await app.ensure_started()
        found = app.match(route_path(scope))
        if found is None:
            await self.deny(scope, send, 404, "no channel at this path")
            return None
        if not app.origin_allowed(scope):
            await self.deny(scope, send, 403, "origin not allowed")
            return None
        limit = self.limits.max_connections
        if limit is not None and len(app.connections) >= limit:
            await self.deny(scope, send, 503, "too many connections")
            return None
        channel, params = found
        codec, subprotocol = app.codecs.negotiate(scope.get("subprotocols") or ())
        conn = Connection(app, channel, scope, send, params, codec, subprotocol)
        if not await self._handshake(conn, channel, scope, send):
            return None
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        app.connections[conn.id] = conn
        self.stats.connections_total += 1
        conn.task = asyncio.current_task()
        conn.last_frame = conn.tokens_at = monotonic()
        conn.accepted()
        self._watch_soon()
        return conn

    async def _handshake(
        self, conn: Connection, channel: Channel, scope: Scope, send: Send
    ) -> bool:
        hooks = (*self.app.connect_hooks, *channel.connect_hooks)
        if not hooks:
            return True
        try:
            await asyncio.wait_for(self._connect(conn, hooks), self.limits.handshake_timeout)
            return True
        except Reject as exc:
            await conn.closed(CloseCode.POLICY_VIOLATION)
            await self.deny(scope, send, exc.status, exc.reason)
        except asyncio.TimeoutError:
            logger.warning("handshake to %r timed out in its on_connect hooks", channel.address)
            await conn.closed(CloseCode.TRY_AGAIN_LATER)
            await self.deny(scope, send, 503, "handshake timed out")
        except Exception:
            logger.exception("on_connect hook failed on %r", channel.address)
            await conn.closed(CloseCode.INTERNAL_ERROR)
            await self.deny(scope, send, 500, "internal error")
        return False

    @staticmethod
    async def _connect(conn: Connection, hooks: tuple[Hook, ...]) -> None:
        for hook in hooks:
            await call_hook(hook, conn, None)

    async def deny(self, scope: Scope, send: Send, status: int, reason: str) -> None:
        """Refuse a handshake with an HTTP status, where the server can send one."""
        self.stats.handshakes_refused[status] += 1
        await deny_handshake(scope, send, status, reason.encode())

    # -- the per-frame path ----------------------------------------------------------

    async def _receive_concurrently(self, conn: Connection, receive: Receive) -> int:
        """The receive loop for ``Limits.concurrency > 1``: a task per frame, bounded."""
        slots = asyncio.Semaphore(self.limits.concurrency)
        running: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            slots.release()

        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    conn.last_frame = monotonic()
                    if conn.connection_state is ConnectionState.CONNECTED:
                        await slots.acquire()
                        text = message.get("text")
                        payload, decoder = (
                            (text, conn.text_decoder)
                            if text is not None
                            else (message.get("bytes") or b"", conn.binary_decoder)
                        )
                        task = asyncio.ensure_future(self.dispatch(conn, payload, decoder))
                        running.add(task)
                        task.add_done_callback(finished)
                elif kind == "websocket.disconnect":
                    return int(message.get("code") or 1005)
                else:
                    raise unexpected(kind)
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def dispatch(self, conn: Connection, payload: str | bytes, decoder: Codec) -> None:
        """Handle one frame: decode, rate, route, validate, call, answer."""
        # A character takes at most 4 bytes in UTF-8: only long frames are measured.
        if len(payload) > self._measure_above and byte_size(payload) > self._max_bytes:
            conn.abort(CloseCode.MESSAGE_TOO_BIG, "message too big")
            return
        if self._rated and not self._take_token(conn):
            await self._refuse(conn, payload, decoder)
            return
        # Plain JSON or MessagePack for a flat model: one pass, where it applies.
        found: tuple[Handler, Any, RequestId] | None = None
        if payload.__class__ is str:
            if conn.json_pass is not None:
                found = conn.json_pass(payload)
        elif conn.binary_pass is not None:
            found = conn.binary_pass(payload)  # type: ignore[arg-type]
        if found is None:
            routed = self.route(conn, payload, decoder)
            if isinstance(routed, Refusal):
                await self.error(conn, *routed)
                return
            found = routed
        handler, data, request_id = found
        event = handler.event
        try:
            if handler.is_async:
                result = await handler.invoke(conn, data)
            else:
                result = await run_sync(handler.invoke, conn, data)
            if request_id is None:
                frame = None
            else:
                validate_reply = handler.validate_reply
                if validate_reply is None:
                    reply = None
                elif result.__class__ is handler.reply_class:
                    reply = result  # a model instance already: the codec serializes it
                else:
                    reply = validate_reply(result)
                frame = conn.codec.encode_event(event, reply, request_id)
        except EventError as exc:
            await self.error(conn, exc.code, exc.message, exc.details, request_id, event)
            return
        except Exception as exc:
            await self._handle_exception(conn, exc, event, request_id)
            return
        self.ok[event] += 1
        if frame is not None:
            # Connection._transmit, inlined for a reply on an idle connection: the
            # coroutine a call makes costs about a tenth of a microsecond per frame.
            if conn.connection_state is not _CONNECTED or conn._sending or conn._queue:
                conn.push(frame)
                return
            conn._sending = True
            try:
                await conn._asgi_send({"type": "websocket.send", conn._frame_key: frame})
            except OSError:
                conn._queue.clear()
                conn.connection_state = ConnectionState.CLOSING
            finally:
                conn._sending = False
                conn.send_started = 0.0
            if conn._queue:
                conn._wake()

    def route(
        self, conn: Connection, payload: str | bytes, decoder: Codec
    ) -> tuple[Handler, Any, RequestId] | Refusal:
        """Decode a frame, read its envelope, find its handler and validate its data.

        Returns ``(handler, data, id)``, or the error frame to answer with.
        """
        try:
            decoded = decoder.decode(payload)
        except DuplicateKeyError as exc:
            code = ErrorCode.BAD_ENVELOPE if exc.top_level else ErrorCode.BAD_FRAME
            ambiguous = exc.top_level and exc.key == "id"
            request_id = None if ambiguous else readable_id(exc.decoded)
            return Refusal(code, str(exc), None, request_id)
        except DecodeError as exc:
            return Refusal(ErrorCode.BAD_FRAME, str(exc), None, None)
        except Exception:  # a user codec that raised something else
            logger.warning("codec %r failed to decode a frame", decoder, exc_info=True)
            return Refusal(ErrorCode.BAD_FRAME, "frame could not be decoded", None, None)
        try:
            event, data, request_id = parse_envelope(decoded)
        except BadEnvelope as exc:
            return Refusal(ErrorCode.BAD_ENVELOPE, exc.message, None, exc.request_id)
        handler = conn.channel.handlers.get(event)
        if handler is None:
            message = f"no handler for event {event!r}"
            return Refusal(ErrorCode.UNKNOWN_EVENT, message, None, request_id)
        if handler.validate is not None:
            try:
                data = handler.validate(data)
            except ValidationError as exc:
                message = f"invalid data for event {event!r}"
                details = validation_details(exc)
                return Refusal(ErrorCode.VALIDATION_ERROR, message, details, request_id, event)
        return handler, data, request_id

    def _take_token(self, conn: Connection) -> bool:
        """Take one token from the connection's bucket (``rate`` per second, ``burst`` deep)."""
        limits = self.limits
        assert limits.rate is not None
        now = monotonic()
        tokens = min(float(limits.burst), conn.tokens + (now - conn.tokens_at) * limits.rate)
        conn.tokens_at = now
        if tokens >= 1.0:
            conn.tokens = tokens - 1.0
            return True
        conn.tokens = tokens
        if now - conn.refused_since > RATE_WINDOW:
            conn.refused_since, conn.refused = now, 0
        conn.refused += 1
        return False

    async def _refuse(self, conn: Connection, payload: str | bytes, decoder: Codec) -> None:
        self.stats.rate_limited += 1
        if conn.refused > self.limits.burst:
            conn.abort(CloseCode.POLICY_VIOLATION, "rate limit exceeded")
            return
        try:
            request_id = parse_envelope(decoder.decode(payload))[2]
        except Exception:
            request_id = None
        await self.error(conn, ErrorCode.RATE_LIMITED, "too many events", None, request_id)

    async def error(
        self,
        conn: Connection,
        code: str,
        message: str,
        details: Any,
        request_id: RequestId,
        event: str | None = None,
    ) -> None:
        """Send an error frame, and count it (by event too, for a registered event)."""
        code = str(code)
        self.stats.errors[code] += 1
        if event is not None:
            self.stats.events[event, code] += 1
        try:
            frame = conn.codec.encode(
                error_frame(code, message, to_jsonable_python(details), request_id)
            )
        except Exception:
            logger.exception("error details for %r could not be encoded", code)
            frame = conn.codec.encode(
                error_frame(ErrorCode.INTERNAL_ERROR.value, "internal error", None, request_id)
            )
        await conn.send_frame(frame)

    async def _handle_exception(
        self, conn: Connection, exc: Exception, event: str, request_id: RequestId
    ) -> None:
        mapper = self.app.exception_handler_for(type(exc))
        if mapper is None:
            logger.error("handler for event %r raised", event, exc_info=exc)
        else:
            try:
                result = mapper(conn, exc)
                if inspect.isawaitable(result):
                    result = await result
            except EventError as error:
                result = error
            except Exception:
                logger.exception("exception handler for %s failed", type(exc).__name__)
                result = None
            if isinstance(result, EventError):
                await self.error(
                    conn, result.code, result.message, result.details, request_id, event
                )
                return
            if result is not None:
                logger.error(
                    "exception handler for %s returned %r, not an EventError",
                    type(exc).__name__,
                    result,
                )
        await self.error(conn, ErrorCode.INTERNAL_ERROR, "internal error", None, request_id, event)

    # -- the watchdog: send and idle timeouts, without a task or a timer per frame --

    def _watch_soon(self) -> None:
        if self._watchdog is None:
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_later(WATCH_INTERVAL, self._watch)

    def _watch(self) -> None:
        self._watchdog = None
        connections = self.app.connections
        if not connections:
            return  # the next connection starts it again
        now = monotonic()
        send_timeout, idle = self.limits.send_timeout, self.limits.idle_timeout
        for conn in list(connections.values()):
            started = conn.send_started
            if conn.sending and not started:
                conn.send_started = now  # timed from here: at most WATCH_INTERVAL late
            elif started and now - started > send_timeout:
                conn.abort(CloseCode.TRY_AGAIN_LATER, "send timed out: the client is not reading")
            elif idle is not None and now - conn.last_frame > idle:
                conn.abort(CloseCode.NORMAL_CLOSURE, "idle")
        self._watch_soon()

    def stop(self) -> None:
        """Stop the watchdog."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None


async def deny_handshake(scope: Scope, send: Send, status: int, body: bytes) -> None:
    """Answer a handshake with an HTTP status and a text body, where the server can.

    Without the ``websocket.http.response`` extension the server answers 403.
    """
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        reason = body[:123].decode(errors="ignore")  # a close reason fits in 123 bytes
        await send(
            {"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION, "reason": reason}
        )


def unexpected(kind: str) -> RuntimeError:
    """The error for an ASGI message the receive loop cannot take."""
    return RuntimeError(
        f'Expected ASGI message "websocket.receive" or "websocket.disconnect", but got {kind!r}'
    )


def _uncancel() -> None:
    """Undo a cancellation this code handled (Python 3.11+ counts them)."""
    task = asyncio.current_task()
    if task is not None and hasattr(task, "uncancel"):
        task.uncancel()


async def call_hook(hook: Hook, conn: Connection, argument: Any) -> None:
    """Call an ``on_connect`` or ``on_disconnect`` hook, sync ones in a thread."""
    if hook.is_async:
        await hook.invoke(conn, argument)
    else:
        await run_sync(hook.invoke, conn, argument)


def readable_id(decoded: Any) -> RequestId:
    """The ``id`` of a frame, where it can be read."""
    try:
        return parse_envelope(decoded)[2]
    except BadEnvelope as exc:
        return exc.request_id


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as ``{loc, msg, type}``: never the input, which may hold secrets."""
    return [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def byte_size(payload: str | bytes) -> int:
    """The size of a frame's payload in bytes."""
    if isinstance(payload, str):
        return len(payload.encode("utf-8", "surrogatepass"))
    return len(payload)


def route_path(scope: Scope) -> str:
    """The path relative to the mount point (Starlette's ``get_route_path``)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path
