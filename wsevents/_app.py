"""EventApp: the ASGI callable, its registration, and the lifespan.

The work is elsewhere: handshakes and connections in ``_runtime`` and
``_session``, subscriptions and publishes in ``_broker``, HTTP in ``_http``;
they read the app's declarations from its frozen :class:`~wsevents._registry.Registry`.

Over 300 lines: the one public class, whose every method and argument is
documented here, for the reference.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.types import Receive, Scope, Send

from ._connection import Connection
from ._handshake import install_cancelled_connection_filter, install_refusal_filter
from ._history import History, Position, Publication
from ._http import HTTPRoutes
from ._limits import Limits
from ._members import Presence
from ._registry import ExceptionHandler, Registry
from ._routing import Channel, Hook, bind_hook, callable_name
from ._runtime import Runtime
from ._stats import Stats
from ._topics import check_topic
from .auth import install_redaction
from .backplane import Backplane, create_backplane
from .codecs import Codec, CodecSet
from .exceptions import CloseCode, RegistrationError

__all__ = ["EventApp"]

logger = logging.getLogger("wsevents")

if TYPE_CHECKING:
    from ._telemetry import Telemetry

F = TypeVar("F", bound=Callable[..., Any])

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
        telemetry: OpenTelemetry spans and metrics (``pip install 'wsevents[otel]'``):
            ``True`` uses the global tracer and meter providers, a mapping
            ``{"tracer_provider": ..., "meter_provider": ...}`` the ones given.
            Off (``False``), nothing of OpenTelemetry is imported.
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
        request_window: float = 300.0,
        telemetry: bool | Mapping[str, Any] = False,
    ) -> None:
        self.channels = list(channels)
        names: set[str] = set()
        addresses: set[str] = set()
        for channel in self.channels:
            if not isinstance(channel, Channel):
                raise RegistrationError(f"expected a Channel, got {channel!r}")
            if channel.name in names:
                raise RegistrationError(f"two channels are named {channel.name!r}")
            if channel.address in addresses:
                raise RegistrationError(f"two channels have the address {channel.address!r}")
            names.add(channel.name)
            addresses.add(channel.address)
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
        self._stats = Stats()
        self._connect_hooks: list[Hook] = []
        self._disconnect_hooks: list[Hook] = []
        self._exception_handlers: dict[type[BaseException], ExceptionHandler] = {}
        self._registry: Registry | None = None
        self._started = False
        self._runtime = Runtime(
            self,
            lambda: self.registry,
            self._ensure_started,
            self.limits,
            self._stats,
            self.backplane,
            history=tuple(rule for rule in self.topics if isinstance(rule, History)),
            presence=tuple(rule for rule in self.topics if isinstance(rule, Presence)),
            request_window=request_window,
            telemetry=self._telemetry(telemetry),
        )
        self._http = HTTPRoutes(
            lambda: self.registry,
            self.asyncapi,
            self.stats,
            self._runtime.refusals,
            docs_url=docs_url,
            asyncapi_url=asyncapi_url,
            metrics_url=metrics_url,
            client_url=client_url,
        )
        install_redaction()
        install_refusal_filter()
        install_cancelled_connection_filter()

    @property
    def registry(self) -> Registry:
        """What this app declared, frozen: the runtime and the AsyncAPI builder read it.

        Made again after each registration (a hook, an exception handler).
        """
        registry = self._registry
        if registry is None:
            registry = self._registry = Registry(
                channels=tuple(self.channels),
                codecs=self.codecs,
                connect_hooks=tuple(self._connect_hooks),
                disconnect_hooks=tuple(self._disconnect_hooks),
                exception_handlers=dict(self._exception_handlers),
                allowed_origins=self.allowed_origins,
                title=self.title,
                version=self.version,
                description=self.description,
                servers=self.servers,
                topics=self.topics,
            )
        return registry

    # -- registration --------------------------------------------------------------

    def on_connect(self, func: F) -> F:
        """Register a hook that runs at every channel's handshake, before the channel's own."""
        self._connect_hooks.append(bind_hook(func, f"app on_connect hook {callable_name(func)}"))
        self._registry = None
        return func

    def on_disconnect(self, func: F) -> F:
        """Register a hook that runs when any connection closes, before the channel's own."""
        self._disconnect_hooks.append(
            bind_hook(func, f"app on_disconnect hook {callable_name(func)}", close_code=True)
        )
        self._registry = None
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
            self._registry = None
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
        return await self._runtime.broker.publish(check_topic(topic), event, data, exclude)

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
        await self._ensure_started()
        return await self._runtime.broker.streams.history(topic, since, limit)

    async def presence(self, topic: str) -> dict[str, dict[str, Any]]:
        """Every member of ``topic``, in every process: connection id to the info it gave.

        Raises:
            TopicError: ``topic`` is not valid, or matches no ``Presence`` rule.
            BackplaneUnavailable: the backplane did not answer in time.
        """
        await self._ensure_started()
        return await self._runtime.broker.rooms.members(topic)

    async def presence_count(self, topic: str) -> int:
        """How many members ``topic`` has, in every process, without reading them.

        Raises:
            TopicError: ``topic`` is not valid, or matches no ``Presence`` rule.
            BackplaneUnavailable: the backplane did not answer in time.
        """
        await self._ensure_started()
        return await self._runtime.broker.rooms.count(topic)

    async def send_to(self, connection_id: str, event: str, data: Any = None) -> None:
        """Deliver ``event`` to one connection, in whichever process holds it.

        An id nobody holds is dropped silently.
        """
        await self._runtime.broker.send_to(connection_id, event, data)

    async def send_to_user(self, user: str, event: str, data: Any = None) -> None:
        """Deliver ``event`` to every connection of ``user`` (``conn.user``), in every process.

        It travels as a publish does: validated against the channels'
        ``emits`` models first, encoded once per model and codec, and heard
        only by the processes that hold a connection of that user. A user
        with no connection is dropped silently.

        Raises:
            PayloadError: ``data`` does not match a channel's ``emits`` model.
        """
        await self._runtime.users.send_to_user(user, event, data)

    async def disconnect(
        self,
        connection_id: str | None = None,
        *,
        user: str | None = None,
        code: int = CloseCode.ENDED_BY_APP,
        reason: str = "",
    ) -> None:
        """Close connections wherever they are: one by id, or every one of ``user``.

        With both, the connection closes only if it is that user's. The
        connections open when it is called close with ``code`` (4403 by
        default: the wsevents clients do not reconnect after it) and
        ``reason``, once the frames already queued for them are sent; a
        handshake still in its ``on_connect`` hooks is not affected (revoke
        the credential first, so that it is refused).

        Raises:
            ValueError: neither ``connection_id`` nor ``user``; a ``code``
                that is not 1000 or 3000 to 4999; a ``reason`` over 123 bytes.
            BackplaneUnavailable: the other processes could not be told (the
                connections of this process are closed already).
        """
        await self._ensure_started()
        await self._runtime.users.disconnect(connection_id, user, code, reason)

    async def request(
        self, connection_id: str, event: str, data: Any = None, *, timeout: float = 10.0
    ) -> Any:
        """:meth:`Connection.request` of a connection that any process holds.

        Raises what ``Connection.request`` raises; ``ConnectionGone`` at once
        for an id that no live process holds, where the backplane can tell
        (memory and Redis can); ``RequestTimeout`` after ``timeout`` where it
        cannot (Redis unreachable).
        """
        await self._ensure_started()
        return await self._runtime.requests.request(connection_id, event, data, timeout)

    async def request_all(
        self, topic: str, event: str, data: Any = None, *, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Ask every subscriber of ``topic``, in every process, and gather the outcomes.

        Every connection whose subscriptions match ``topic`` (patterns
        included) is asked once. Returns, by connection id, the answer's
        data (validated by the channel's ``reply``), or the exception
        :meth:`Connection.request` would have raised for that connection
        (``EventError``, ``RequestTimeout``, ``ConnectionGone``); it returns
        when all have answered, or at ``timeout``, whichever is first.

        Raises:
            TopicError: ``topic`` is not a valid topic.
        """
        await self._ensure_started()
        return await self._runtime.requests.request_all(topic, event, data, timeout)

    @property
    def node_id(self) -> str:
        """This process's id: every connection id it gives starts with it and a ``-``."""
        return self._runtime.broker.node_id

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

    def asyncapi(self, *, root_path: str = "", server: str | None = None) -> dict[str, Any]:
        """Return the AsyncAPI 3.0.0 document of this app's channels.

        Args:
            root_path: the mount prefix to put before every channel address.
            server: the ``ws://host:port`` (or ``wss://``) of the ``servers``
                entry, where ``EventApp(servers=...)`` names none; default
                ``ws://localhost:8000``. Served over HTTP, it is the request's.
        """
        from .asyncapi import build_asyncapi  # the runtime never needs the builder

        return build_asyncapi(self.registry, root_path=root_path, server=server)

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
        self._runtime.prepare()  # not at the first connection, while it waits
        if not await self._runtime.broker.start(BACKPLANE_READY_TIMEOUT):
            logger.warning(
                "the backplane %r is not ready: serving this process only until it is",
                self.backplane,
            )

    async def shutdown(self) -> None:
        """Close every open connection with 1001 and wait, a bounded time, for them to end."""
        await self._runtime.shutdown()
        await self._runtime.requests.stop()
        await self._runtime.once.stop()
        await self._runtime.broker.stop()
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

    def _telemetry(self, telemetry: bool | Mapping[str, Any]) -> Telemetry | None:
        """The app's telemetry, where ``telemetry`` turns it on; ``None`` where it is off."""
        if telemetry is False:
            return None
        providers: dict[str, Any] = {}
        if isinstance(telemetry, Mapping):
            unknown = set(telemetry) - {"tracer_provider", "meter_provider"}
            if unknown:
                raise RegistrationError(
                    f"telemetry takes tracer_provider and meter_provider, not {sorted(unknown)}"
                )
            providers = dict(telemetry)
        elif telemetry is not True:
            raise RegistrationError(
                f"telemetry must be True, False or a mapping, got {telemetry!r}"
            )
        try:
            from ._telemetry import Telemetry
        except ImportError:
            raise RegistrationError(
                "telemetry needs the OpenTelemetry API: pip install 'wsevents[otel]'"
            ) from None
        return Telemetry(
            self._stats,
            lambda: len(self._runtime.connections),
            lambda: self.backplane.stats,
            **providers,
        )

    async def _ensure_started(self) -> None:
        """Start on the first connection where the lifespan was not wired, with a warning."""
        if not self._started:
            logger.warning(
                "wsevents started on its first connection: pass lifespan=events.lifespan "
                "to the Starlette or FastAPI app that mounts it"
            )
            await self.startup()

    # -- counters ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Return the counters: connections, events by name and outcome, errors by code,
        slow consumers dropped, rate limits hit, closes by code, backplane reconnects."""
        return self._stats.snapshot(len(self._runtime.connections), self.backplane.stats)
