"""EventApp: the ASGI callable, its registration, its HTTP routes and the lifespan.

Over 300 lines: the one public class, its registration, HTTP and lifespan
surfaces; the work is in ``_runtime``, ``_session`` and ``_topics``.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from starlette._utils import get_route_path
from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from ._connection import Connection
from ._history import History, Position, Publication
from ._limits import Limits
from ._presence import Presence
from ._routing import Channel, Hook, bind_hook, callable_name
from ._runtime import Runtime, install_cancelled_connection_filter, install_refusal_filter
from ._stats import Stats, render_prometheus
from ._topics import Broker
from .auth import install_redaction
from .backplane import Backplane, create_backplane
from .codecs import Codec, CodecSet
from .exceptions import (
    EventError,
    RegistrationError,
)

__all__ = ["EventApp"]

logger = logging.getLogger("wsevents")

F = TypeVar("F", bound=Callable[..., Any])
ExceptionHandler = Callable[[Connection, Any], "EventError | Awaitable[EventError]"]

BACKPLANE_READY_TIMEOUT = 2.0


class EventApp:
    """The ASGI application: WebSocket channels, their HTTP side and the lifespan.

    Args:
        channels: the :class:`Channel` objects to serve.
        title: the API's title, for the AsyncAPI document (default "WebSocket API").
        version: the API's version, for the AsyncAPI document (default "0.1.0").
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
        metrics_url: the path of the Prometheus metrics (:meth:`stats`); off by default.
        client_url: the path of the browser client, an ES module (its types are
            served beside it, ``.d.ts`` for ``.js``); ``None`` to serve neither.
    """

    def __init__(
        self,
        channels: Iterable[Channel],
        *,
        title: str = "WebSocket API",
        version: str = "0.1.0",
        description: str | None = None,
        backplane: str | Backplane = "memory://",
        limits: Limits | None = None,
        allowed_origins: Iterable[str] | None = None,
        codecs: Iterable[Codec] | None = None,
        servers: dict[str, Any] | None = None,
        docs_url: str | None = "/docs",
        asyncapi_url: str | None = "/asyncapi.json",
        metrics_url: str | None = None,
        client_url: str | None = "/wsevents.js",
        topics: Iterable[History | Presence] = (),
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
        self.topics = tuple(topics)
        for rule in self.topics:
            if not isinstance(rule, (History, Presence)):
                raise RegistrationError(
                    f"expected a History or Presence rule in topics, got {rule!r}"
                )
        history = tuple(rule for rule in self.topics if isinstance(rule, History))
        presence = tuple(rule for rule in self.topics if isinstance(rule, Presence))
        self._broker = Broker(
            self.backplane, secrets.token_hex(4), self.channels, history, presence
        )
        self._stats = Stats()
        self._connect_hooks: list[Hook] = []
        self._disconnect_hooks: list[Hook] = []
        self._exception_handlers: dict[type[BaseException], ExceptionHandler] = {}
        self._handler_for: dict[type[BaseException], ExceptionHandler | None] = {}
        self._started = False
        self._documents: dict[str, dict[str, Any]] = {}
        self._http_routes: dict[str, Callable[[Scope], Response]] = {}
        if asyncapi_url:
            self._http_routes[asyncapi_url] = self._asyncapi_json
            self._http_routes[yaml_url(asyncapi_url)] = self._asyncapi_yaml
        # Where the docs page's console reads why a handshake it made was refused.
        self._refusals_path = docs_url.rstrip("/") + "/refusals/" if docs_url else None
        if docs_url:
            self._http_routes[docs_url] = self._docs_page
        if metrics_url:
            self._http_routes[metrics_url] = self._metrics
        if client_url:
            self._http_routes[client_url] = _static("wsevents.js", "text/javascript")
            self._http_routes[types_url(client_url)] = _static(
                "wsevents.d.ts", "application/typescript"
            )
        self._runtime = Runtime(self, self.limits, self._broker, self._stats)
        install_redaction()
        install_refusal_filter()
        install_cancelled_connection_filter()

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
    ) -> Position | None:
        """Deliver ``event`` to every subscriber of ``topic``, in every process.

        The payload is validated and encoded once per declared model and codec,
        not once per subscriber, and no publisher waits for a slow subscriber.
        For a topic without history, the backplane being away is logged and
        counted, never raised. A topic that matches a ``History`` rule keeps
        the publication first, and returns its position.

        Args:
            exclude: connection ids to skip (live pushes only: a replay has all).

        Returns:
            The publication's :class:`Position` on a history topic, else ``None``.

        Raises:
            PayloadError: ``data`` does not match a channel's ``emits`` model.
            TopicError: ``topic`` is not a valid topic name.
            BackplaneUnavailable: a history topic's publication was not
                confirmed within the rule's ``publish_timeout``; it reached nobody.
        """
        return await self._broker.publish(topic, event, data, exclude)

    async def history(
        self, topic: str, *, since: Position | None = None, limit: int = 100
    ) -> list[Publication]:
        """Return at most ``limit`` kept publications of ``topic``, oldest first.

        They are the oldest kept after ``since``; from the oldest kept when
        ``since`` is ``None`` or of another epoch. Page forward by passing the
        last one's position.

        Raises:
            TopicError: ``topic`` is not valid, or matches no ``History`` rule.
            BackplaneUnavailable: the backplane did not answer in time.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
        await self.ensure_started()
        return await self._broker.history(topic, since, limit)

    async def presence(self, topic: str) -> dict[str, dict[str, Any]]:
        """Every member of ``topic``, in every process: connection id to the info it gave.

        Raises:
            TopicError: ``topic`` is not valid, or matches no ``Presence`` rule.
            BackplaneUnavailable: the backplane did not answer in time.
        """
        await self.ensure_started()
        return await self._broker.presence(topic)

    async def presence_count(self, topic: str) -> int:
        """How many members ``topic`` has, in every process, without reading them.

        Raises:
            TopicError: ``topic`` is not valid, or matches no ``Presence`` rule.
            BackplaneUnavailable: the backplane did not answer in time.
        """
        await self.ensure_started()
        return await self._broker.presence_count(topic)

    async def send_to(self, connection_id: str, event: str, data: Any = None) -> None:
        """Deliver ``event`` to one connection, in whichever process holds it.

        An id nobody holds is dropped silently.
        """
        await self._broker.send_to(connection_id, event, data)

    @property
    def node_id(self) -> str:
        """This process's id: every connection id it gives starts with it and a ``-``."""
        return self._broker.node_id

    @property
    def connections(self) -> Mapping[str, Connection]:
        """This process's open connections, by id (a read-only view)."""
        return self._runtime.connections

    @property
    def ready(self) -> bool:
        """Whether the app started and its backplane acknowledged its subscriptions."""
        return self._started and self.backplane.ready

    # -- ASGI ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._runtime.serve(scope, receive, send)
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

    def asyncapi(self, *, root_path: str = "", server: str | None = None) -> dict[str, Any]:
        """Return the AsyncAPI 3.0.0 document of this app's channels.

        Args:
            root_path: the mount prefix to put before every channel address.
            server: the ``ws://host:port`` (or ``wss://``) of the ``servers``
                entry, where ``EventApp(servers=...)`` names none; default
                ``ws://localhost:8000``. Served over HTTP, it is the request's.
        """
        from .asyncapi import build_asyncapi  # the runtime never needs the builder

        return build_asyncapi(self, root_path=root_path, server=server)

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
        path = get_route_path(scope)
        response: Response
        if path in self._http_routes:
            if scope["method"] not in ("GET", "HEAD"):
                response = PlainTextResponse(
                    "Method Not Allowed", status_code=405, headers={"Allow": "GET, HEAD"}
                )
            else:
                response = self._http_routes[path](scope)
        elif self._refusals_path and path.startswith(self._refusals_path):
            response = self._refusal(path[len(self._refusals_path) :])
        elif self.match(path) is not None:
            response = PlainTextResponse(
                "this is a WebSocket endpoint", status_code=426, headers={"Upgrade": "websocket"}
            )
        else:
            response = PlainTextResponse("Not Found", status_code=404)
        await response(scope, receive, send)

    def _document(self, scope: Scope) -> dict[str, Any]:
        """The document for a request: its mount prefix, and its host as the server."""
        from .asyncapi import server_object

        root_path = scope.get("root_path", "")
        document = self._documents.get(root_path)
        if document is None:
            document = self._documents[root_path] = self.asyncapi(root_path=root_path)
        if self.servers:
            return document
        try:
            server = server_object(_request_server(scope))
        except ValueError:  # a Host header that is no host: keep the default
            return document
        return {**document, "servers": {"default": server}}

    def _asyncapi_json(self, scope: Scope) -> Response:
        body = json.dumps(self._document(scope), indent=2, ensure_ascii=False)
        return Response(body, media_type="application/json")

    def _asyncapi_yaml(self, scope: Scope) -> Response:
        import yaml

        body = yaml.safe_dump(self._document(scope), sort_keys=False, allow_unicode=True)
        return Response(body, media_type="application/yaml")

    def _metrics(self, scope: Scope) -> Response:
        return PlainTextResponse(
            render_prometheus(self.stats()), media_type="text/plain; version=0.0.4"
        )

    def _refusal(self, nonce: str) -> Response:
        found = self._runtime.refusals.get(nonce)
        headers = {"Cache-Control": "no-store"}
        if found is None:
            return JSONResponse({"status": None, "reason": None}, status_code=404, headers=headers)
        return JSONResponse({"status": found[0], "reason": found[1]}, headers=headers)

    def _docs_page(self, scope: Scope) -> Response:
        from .asyncapi import render_docs_page

        return HTMLResponse(render_docs_page(self._document(scope)))

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
        codecs = self.codecs.by_subprotocol.values()
        for channel in self.channels:
            channel.compile(codecs)  # not at the first connection, while it waits
        if not await self._broker.start(BACKPLANE_READY_TIMEOUT):
            logger.warning(
                "the backplane %r is not ready: serving this process only until it is",
                self.backplane,
            )

    async def shutdown(self) -> None:
        """Close every open connection with 1001 and wait, a bounded time, for them to end."""
        await self._runtime.shutdown()
        await self._broker.stop()
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

    # -- connections ---------------------------------------------------------------

    async def ensure_started(self) -> None:
        """Start on the first connection where the lifespan was not wired, with a warning."""
        if not self._started:
            logger.warning(
                "wsevents started on its first connection: pass lifespan=events.lifespan "
                "to the Starlette or FastAPI app that mounts it"
            )
            await self.startup()

    @property
    def connect_hooks(self) -> list[Hook]:  # read by the AsyncAPI builder too
        """The app-wide ``on_connect`` hooks, in the order they run."""
        return self._connect_hooks

    @property
    def disconnect_hooks(self) -> list[Hook]:
        """The app-wide ``on_disconnect`` hooks, in the order they run."""
        return self._disconnect_hooks

    def exception_handler_for(self, exc_type: type[BaseException]) -> ExceptionHandler | None:
        """The handler registered for ``exc_type`` or its nearest base class."""
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

    def stats(self) -> dict[str, Any]:
        """Return the counters: connections, events by name and outcome, errors by code,
        slow consumers dropped, rate limits hit, closes by code, backplane reconnects."""
        return self._stats.snapshot(len(self._runtime.sessions), self.backplane.stats)


def types_url(client_url: str) -> str:
    """Where the types of the browser client are served: ``.d.ts`` beside the ``.js``."""
    return client_url.removesuffix(".js") + ".d.ts"


def _request_server(scope: Scope) -> str:
    """``ws://`` or ``wss://`` and the host the request named (or the server's address)."""
    scheme = "wss" if scope.get("scheme") in ("https", "wss") else "ws"
    host = Headers(scope=scope).get("host")
    if not host and scope.get("server"):
        name, port = scope["server"]
        host = f"[{name}]:{port}" if ":" in str(name) else f"{name}:{port}"
    return f"{scheme}://{host or 'localhost'}"


def _static(name: str, media_type: str) -> Callable[[Scope], Response]:
    """Serve a file of ``wsevents/static``, read once, cacheable for an hour."""
    body = (Path(__file__).parent / "static" / name).read_bytes()
    headers = {"Cache-Control": "public, max-age=3600"}

    def respond(scope: Scope) -> Response:
        return Response(body, media_type=f"{media_type}; charset=utf-8", headers=headers)

    return respond


def yaml_url(asyncapi_url: str) -> str:
    """The path of the YAML document: the JSON one's, ending ``.yaml``."""
    stem = asyncapi_url[: -len(".json")] if asyncapi_url.endswith(".json") else asyncapi_url
    return stem + ".yaml"
