"""EventApp: the ASGI callable, the handshake, the receive loop and the lifespan."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any, TypeVar

from anyio.to_thread import run_sync
from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from ._connection import Connection, ConnectionState
from ._envelope import BadEnvelope, RequestId, error_frame, event_frame, parse_envelope
from ._limits import Limits
from ._routing import Channel, Hook, bind_hook, callable_name
from ._topics import Broker, Topics
from .backplane import Backplane, create_backplane
from .codecs import Codec, CodecSet
from .exceptions import (
    CloseCode,
    DecodeError,
    DuplicateKeyError,
    ErrorCode,
    EventError,
    RegistrationError,
    Reject,
)

__all__ = ["EventApp"]

logger = logging.getLogger("wsevents")

F = TypeVar("F", bound=Callable[..., Any])
ExceptionHandler = Callable[[Connection, Any], "EventError | Awaitable[EventError]"]

SHUTDOWN_GRACE = 5.0
BACKPLANE_READY_TIMEOUT = 2.0


class EventApp:
    """The ASGI application: WebSocket channels, their HTTP side and the lifespan.

    Args:
        channels: the :class:`Channel` objects to serve.
        title: the API's title, for the AsyncAPI document.
        version: the API's version, for the AsyncAPI document.
        description: what the API is for.
        backplane: where publishes travel between processes: ``"memory://"``
            (one process), ``"redis://host:port/db"``, or a ``Backplane``.
        limits: per-connection :class:`Limits`.
        allowed_origins: origins a browser may connect from (``"*"`` for any);
            ``None`` checks nothing. A handshake without ``Origin`` is allowed.
        codecs: codecs to add, or to replace the built-in ones of the same subprotocol.
        servers: AsyncAPI ``servers`` entries.
        docs_url: the path of the docs page.
        asyncapi_url: the path of the AsyncAPI document.
    """

    def __init__(
        self,
        channels: Iterable[Channel],
        *,
        title: str,
        version: str,
        description: str | None = None,
        backplane: str | Backplane = "memory://",
        limits: Limits | None = None,
        allowed_origins: Iterable[str] | None = None,
        codecs: Iterable[Codec] | None = None,
        servers: dict[str, Any] | None = None,
        docs_url: str | None = "/docs",
        asyncapi_url: str | None = "/asyncapi.json",
    ) -> None:
        self.channels = list(channels)
        self._static: dict[str, Channel] = {}
        self._dynamic: list[Channel] = []
        names: set[str] = set()
        for channel in self.channels:
            if not isinstance(channel, Channel):
                raise RegistrationError(f"expected a Channel, got {channel!r}")
            if channel.name in names:
                raise RegistrationError(f"two channels are named {channel.name!r}")
            if channel.address in self._static or any(
                other.address == channel.address for other in self._dynamic
            ):
                raise RegistrationError(f"two channels have the address {channel.address!r}")
            names.add(channel.name)
            if channel.is_static:
                self._static[channel.address] = channel
            else:
                self._dynamic.append(channel)
        self.title = title
        self.version = version
        self.description = description
        self.backplane = (
            backplane if isinstance(backplane, Backplane) else create_backplane(backplane)
        )
        self.node_id = secrets.token_hex(4)
        self.limits = limits or Limits()
        self.allowed_origins = (
            None
            if allowed_origins is None
            else frozenset(origin.lower().rstrip("/") for origin in allowed_origins)
        )
        self.codecs = CodecSet(codecs)
        self.servers = servers
        self.docs_url = docs_url
        self.asyncapi_url = asyncapi_url
        self.connections: dict[str, Connection] = {}
        self.broker = Broker(self.backplane, self.node_id, self.connections, self.channels)
        self._connect_hooks: list[Hook] = []
        self._disconnect_hooks: list[Hook] = []
        self._exception_handlers: dict[type[BaseException], ExceptionHandler] = {}
        self._handler_for: dict[type[BaseException], ExceptionHandler | None] = {}
        self._started = False
        self._idle: asyncio.Event | None = None
        self._documents: dict[str, dict[str, Any]] = {}
        self._http_routes: dict[str, Callable[[str], Response]] = {}
        if asyncapi_url:
            self._http_routes[asyncapi_url] = self._asyncapi_json
            self._http_routes[yaml_url(asyncapi_url)] = self._asyncapi_yaml
        if docs_url:
            self._http_routes[docs_url] = self._docs_page

    # -- registration --------------------------------------------------------------

    def on_connect(self, func: F) -> F:
        """Register a hook that runs at every channel's handshake, before the channel's own."""
        self._connect_hooks.append(bind_hook(func, f"app on_connect hook {callable_name(func)}"))
        return func

    def on_disconnect(self, func: F) -> F:
        """Register a hook that runs when any connection closes, before the channel's own."""
        self._disconnect_hooks.append(
            bind_hook(func, f"app on_disconnect hook {callable_name(func)}", close_code=True)
        )
        return func

    def exception_handler(self, exc_type: type[BaseException]) -> Callable[[F], F]:
        """Map exceptions of ``exc_type`` raised by handlers to error frames.

        The decorated function (sync or async) gets ``(conn, exc)`` and returns
        an :class:`EventError`.
        """
        if not (isinstance(exc_type, type) and issubclass(exc_type, Exception)):
            raise RegistrationError(f"expected an Exception subclass, got {exc_type!r}")

        def decorator(func: F) -> F:
            self._exception_handlers[exc_type] = func
            self._handler_for.clear()
            return func

        return decorator

    # -- publishing ----------------------------------------------------------------

    async def publish(
        self, topic: str, event: str, data: Any = None, *, exclude: Iterable[str] | None = None
    ) -> None:
        """Deliver ``event`` to every subscriber of ``topic``, in every process.

        The payload is validated and encoded once per declared model and codec,
        not once per subscriber, and no publisher waits for a slow subscriber.
        The backplane being away is logged and counted, never raised.

        Args:
            exclude: connection ids to skip.

        Raises:
            PayloadError: ``data`` does not match a channel's ``emits`` model.
            TopicError: ``topic`` is not a valid topic name.
        """
        await self.broker.publish(topic, event, data, exclude)

    async def send_to(self, connection_id: str, event: str, data: Any = None) -> None:
        """Deliver ``event`` to one connection, in whichever process holds it.

        An id nobody holds is dropped silently.
        """
        await self.broker.send_to(connection_id, event, data)

    async def join(self, subscription: str, conn: Connection) -> None:
        """Subscribe ``conn`` to a topic or pattern (``Connection.subscribe`` calls this)."""
        await self.broker.join(subscription, conn)

    async def leave(self, subscription: str, conn: Connection) -> None:
        """Unsubscribe ``conn`` (``Connection.unsubscribe`` calls this)."""
        await self.broker.leave(subscription, conn)

    @property
    def topics(self) -> Topics[Connection]:
        """This process's subscriptions."""
        return self.broker.topics

    @property
    def ready(self) -> bool:
        """Whether the app started and its backplane acknowledged its subscriptions."""
        return self._started and self.broker.backplane.ready

    # -- ASGI ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            raise RuntimeError(
                f"Expected ASGI scope type 'websocket', 'http' or 'lifespan', but got {kind!r}"
            )

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols a client may offer, one per codec."""
        return list(self.codecs.by_subprotocol)

    def asyncapi(self, *, root_path: str = "") -> dict[str, Any]:
        """Return the AsyncAPI 3.0.0 document of this app's channels.

        Args:
            root_path: the mount prefix to put before every channel address.
        """
        from .asyncapi import build_asyncapi  # the runtime never needs the builder

        return build_asyncapi(self, root_path=root_path)

    def match(self, path: str) -> tuple[Channel, dict[str, Any]] | None:
        """Return the channel serving ``path`` and its converted parameters."""
        channel = self._static.get(path)
        if channel is not None:
            return channel, {}
        for channel in self._dynamic:
            params = channel.match(path)
            if params is not None:
                return channel, params
        return None

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = _route_path(scope)
        response: Response
        if path in self._http_routes:
            if scope["method"] not in ("GET", "HEAD"):
                response = PlainTextResponse(
                    "Method Not Allowed", status_code=405, headers={"Allow": "GET, HEAD"}
                )
            else:
                response = self._http_routes[path](scope.get("root_path", ""))
        elif self.match(path) is not None:
            response = PlainTextResponse(
                "this is a WebSocket endpoint", status_code=426, headers={"Upgrade": "websocket"}
            )
        else:
            response = PlainTextResponse("Not Found", status_code=404)
        await response(scope, receive, send)

    def _document(self, root_path: str) -> dict[str, Any]:
        document = self._documents.get(root_path)
        if document is None:
            document = self._documents[root_path] = self.asyncapi(root_path=root_path)
        return document

    def _asyncapi_json(self, root_path: str) -> Response:
        body = json.dumps(self._document(root_path), indent=2, ensure_ascii=False)
        return Response(body, media_type="application/json")

    def _asyncapi_yaml(self, root_path: str) -> Response:
        import yaml

        body = yaml.safe_dump(self._document(root_path), sort_keys=False, allow_unicode=True)
        return Response(body, media_type="application/yaml")

    def _docs_page(self, root_path: str) -> Response:
        from .asyncapi import render_docs_page

        return HTMLResponse(render_docs_page(self._document(root_path)))

    # -- lifespan ------------------------------------------------------------------

    def lifespan(self, app: object = None) -> AbstractAsyncContextManager[None]:
        """Return the lifespan context for the host app: ``Starlette(lifespan=events.lifespan)``.

        Starlette does not pass lifespan events to mounted apps, so a host app
        that mounts this one runs its lifespan through this.
        """
        return self._lifespan_context()

    @asynccontextmanager
    async def _lifespan_context(self) -> AsyncIterator[None]:
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        """Start the backplane; the lifespan calls this.

        It waits a bounded time for the backplane: an app whose Redis is away
        starts anyway, serves its own process, and joins when Redis is back.
        """
        self._started = True
        if not await self.broker.start(BACKPLANE_READY_TIMEOUT):
            logger.warning(
                "the backplane %r is not ready: serving this process only until it is",
                self.backplane,
            )

    async def shutdown(self) -> None:
        """Close every open connection with 1001 and wait, a bounded time, for them to end."""
        for conn in list(self.connections.values()):
            await conn.close(CloseCode.GOING_AWAY, "server shutting down")
        if self.connections:
            self._idle = asyncio.Event()
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), SHUTDOWN_GRACE)
            self._idle = None
        await self.broker.stop()
        self._started = False

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    logger.exception("wsevents startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- the handshake -------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            raise RuntimeError(
                f'Expected ASGI message "websocket.connect", but got {message["type"]!r}'
            )
        if not self._started:
            logger.warning(
                "wsevents started on its first connection: pass lifespan=events.lifespan "
                "to the Starlette or FastAPI app that mounts it"
            )
            await self.startup()
        found = self.match(_route_path(scope))
        if found is None:
            await _deny(scope, send, 404, "no channel at this path")
            return
        if not self._origin_allowed(scope):
            await _deny(scope, send, 403, "origin not allowed")
            return
        channel, params = found
        codec, subprotocol = self.codecs.negotiate(scope.get("subprotocols") or ())
        conn = Connection(self, channel, scope, send, params, codec, subprotocol)
        try:
            for hook in (*self._connect_hooks, *channel.connect_hooks):
                await _call_hook(hook, conn, None)
        except Reject as exc:
            await conn.closed(CloseCode.POLICY_VIOLATION)
            await _deny(scope, send, exc.status, exc.reason)
            return
        except Exception:
            logger.exception("on_connect hook failed on %r", channel.address)
            await conn.closed(CloseCode.INTERNAL_ERROR)
            await _deny(scope, send, 500, "internal error")
            return
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        self.connections[conn.id] = conn
        conn.accepted()
        code: int = CloseCode.INTERNAL_ERROR
        try:
            code = await self._receive_loop(conn, receive)
        except Exception:
            logger.exception("connection %s to %r failed", conn.id, channel.address)
            await conn.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            del self.connections[conn.id]
            if self._idle is not None and not self.connections:
                self._idle.set()
            await conn.closed(code)
            for hook in (*self._disconnect_hooks, *channel.disconnect_hooks):
                try:
                    await _call_hook(hook, conn, code)
                except Exception:
                    logger.exception("on_disconnect hook failed on %r", channel.address)

    def _origin_allowed(self, scope: Scope) -> bool:
        allowed = self.allowed_origins
        if allowed is None or "*" in allowed:
            return True
        for name, value in scope.get("headers", ()):
            if name == b"origin":
                return value.decode("latin-1").lower().rstrip("/") in allowed
        return True  # no Origin: not a browser

    # -- the receive loop: the per-frame path --------------------------------------

    async def _receive_loop(self, conn: Connection, receive: Receive) -> int:
        dispatch = self._dispatch
        connected = ConnectionState.CONNECTED
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                if conn.connection_state is connected:
                    text = message.get("text")
                    if text is not None:
                        await dispatch(conn, text, conn.text_decoder)
                    else:
                        await dispatch(conn, message.get("bytes") or b"", conn.binary_decoder)
            elif kind == "websocket.disconnect":
                return int(message.get("code") or 1005)
            else:
                raise RuntimeError(
                    'Expected ASGI message "websocket.receive" or "websocket.disconnect", '
                    f"but got {kind!r}"
                )

    async def _dispatch(self, conn: Connection, payload: str | bytes, decoder: Codec) -> None:
        if len(payload) > self.limits.max_message_bytes and _byte_size(payload) > (
            self.limits.max_message_bytes
        ):
            await conn.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
            return
        try:
            event, data, request_id = parse_envelope(decoder.decode(payload))
        except BadEnvelope as exc:
            await _send_error(conn, ErrorCode.BAD_ENVELOPE, exc.message, None, exc.request_id)
            return
        except DuplicateKeyError as exc:
            code = ErrorCode.BAD_ENVELOPE if exc.top_level else ErrorCode.BAD_FRAME
            ambiguous = exc.top_level and exc.key == "id"
            request_id = None if ambiguous else _readable_id(exc.decoded)
            await _send_error(conn, code, str(exc), None, request_id)
            return
        except DecodeError as exc:
            await _send_error(conn, ErrorCode.BAD_FRAME, str(exc), None, None)
            return
        except Exception:  # a user codec that raised something else
            logger.warning("codec %r failed to decode a frame", decoder, exc_info=True)
            await _send_error(conn, ErrorCode.BAD_FRAME, "frame could not be decoded", None, None)
            return
        handler = conn.channel.handlers.get(event)
        if handler is None:
            message = f"no handler for event {event!r}"
            await _send_error(conn, ErrorCode.UNKNOWN_EVENT, message, None, request_id)
            return
        if handler.validate is not None:
            try:
                data = handler.validate(data)
            except ValidationError as exc:
                message = f"invalid data for event {event!r}"
                await _send_error(
                    conn, ErrorCode.VALIDATION_ERROR, message, _details(exc), request_id
                )
                return
        try:
            if handler.is_async:
                result = await handler.invoke(conn, data)
            else:
                result = await run_sync(handler.invoke, conn, data)
            if request_id is None:
                return
            reply = None if handler.dump_reply is None else handler.dump_reply(result)
        except EventError as exc:
            await _send_error(conn, exc.code, exc.message, exc.details, request_id)
            return
        except Exception as exc:
            await self._handle_exception(conn, exc, event, request_id)
            return
        await conn.send_frame(conn.codec.encode(event_frame(event, reply, request_id)))

    async def _handle_exception(
        self, conn: Connection, exc: Exception, event: str, request_id: RequestId
    ) -> None:
        mapper = self._exception_handler_for(type(exc))
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
                await _send_error(conn, result.code, result.message, result.details, request_id)
                return
            if result is not None:
                logger.error(
                    "exception handler for %s returned %r, not an EventError",
                    type(exc).__name__,
                    result,
                )
        await _send_error(conn, ErrorCode.INTERNAL_ERROR, "internal error", None, request_id)

    def _exception_handler_for(self, exc_type: type[BaseException]) -> ExceptionHandler | None:
        try:
            return self._handler_for[exc_type]
        except KeyError:
            found = next(
                (
                    self._exception_handlers[t]
                    for t in exc_type.__mro__
                    if t in self._exception_handlers
                ),
                None,
            )
            self._handler_for[exc_type] = found
            return found


async def _call_hook(hook: Hook, conn: Connection, argument: Any) -> None:
    if hook.is_async:
        await hook.invoke(conn, argument)
    else:
        await run_sync(hook.invoke, conn, argument)


async def _send_error(
    conn: Connection, code: str, message: str, details: Any, request_id: RequestId
) -> None:
    try:
        frame = conn.codec.encode(
            error_frame(str(code), message, to_jsonable_python(details), request_id)
        )
    except Exception:
        logger.exception("error details for %r could not be encoded", code)
        frame = conn.codec.encode(
            error_frame(ErrorCode.INTERNAL_ERROR.value, "internal error", None, request_id)
        )
    await conn.send_frame(frame)


def _readable_id(decoded: Any) -> RequestId:
    try:
        return parse_envelope(decoded)[2]
    except BadEnvelope as exc:
        return exc.request_id


def _details(exc: ValidationError) -> list[dict[str, Any]]:
    # Never the input: a client's payload may hold secrets that end up in logs.
    return [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def _byte_size(payload: str | bytes) -> int:
    return (
        len(payload.encode("utf-8", "surrogatepass")) if isinstance(payload, str) else len(payload)
    )


def yaml_url(asyncapi_url: str) -> str:
    """The path of the YAML document: the JSON one's, ending ``.yaml``."""
    stem = asyncapi_url[: -len(".json")] if asyncapi_url.endswith(".json") else asyncapi_url
    return stem + ".yaml"


def _route_path(scope: Scope) -> str:
    """The path relative to the mount point (Starlette's ``get_route_path``)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path


async def _deny(scope: Scope, send: Send, status: int, reason: str) -> None:
    """Refuse a handshake with an HTTP status, where the server can send one."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        body = reason.encode()
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
    else:  # the server answers 403
        await send(
            {"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION, "reason": reason}
        )
