"""Serving the WebSockets of one app: handshakes, sessions, the watchdog, shutdown.

:meth:`Runtime.serve` takes one ASGI WebSocket from ``websocket.connect`` to
the hooks after it: route, check, run the ``on_connect`` hooks, accept, hand
the session its receive loop, close, tear down. It never swallows a
cancellation that is not its own: a host that cancels the app (a timeout
around it, a server giving up at shutdown) sees the cancellation go on once
the teardown is done.

Over 300 lines: one connection from handshake to teardown, and the watchdog
and shutdown that walk every connection's session; they share the table of
sessions, which would otherwise be reached into from two modules.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import suppress
from time import monotonic, time
from typing import TYPE_CHECKING, Any

import anyio
from starlette.datastructures import QueryParams
from starlette.types import Receive, Scope, Send

from ._broker import Broker
from ._calls import call_hook
from ._connection import Connection
from ._dispatch import Router
from ._envelope import SESSION_PARAMETER, valid_session
from ._fanout import push_all
from ._handshake import RefusalLog, deny_handshake, origin_allowed
from ._history import RESUME_PARAMETER, BadResume, History, parse_resume
from ._members import Presence
from ._once import OnceRuns
from ._registry import Registry
from ._requests import Requests
from ._routing import Channel
from ._session import Session
from ._stats import Stats
from ._tasks import deadline
from ._users import Users
from .codecs import Codec
from .exceptions import BackplaneUnavailable, CloseCode, Reject

if TYPE_CHECKING:
    from ._app import EventApp
    from ._limits import Limits
    from ._telemetry import Telemetry
    from .backplane import Backplane

__all__ = ["ConnectionsView", "Runtime", "route_path"]

logger = logging.getLogger("wsevents")


_RESUME = RESUME_PARAMETER.encode()
_SESSION = SESSION_PARAMETER.encode()
WATCH_INTERVAL = 0.25  # seconds between checks of send and idle timeouts
TEARDOWN_LIMIT = 5.0  # how long the on_disconnect hooks of one connection may take
SHUTDOWN_GRACE = 5.0  # how long shutdown waits for connections to close themselves
ABORT_GRACE = 1.0  # then how long it waits for the ones it aborted
ABNORMAL_CLOSURE = 1006  # the code hooks get when the client went away during the accept


class Runtime:
    """The connections of one app, and what every one of them runs under.

    Args:
        app: the app, which each connection names as its ``app``.
        registry: the app's registry as it is now (a registration made after
            startup is served from the next handshake on).
        start: start the app; the first handshake calls it where the
            lifespan was not wired.
        limits, stats: the app's limits and counters.
        backplane, history, presence: what the broker needs.
        request_window: how long a ``once`` request's answer is kept.
        telemetry: spans and metrics, where the app turned them on.
    """

    def __init__(
        self,
        app: EventApp,
        registry: Callable[[], Registry],
        start: Callable[[], Awaitable[None]],
        limits: Limits,
        stats: Stats,
        backplane: Backplane,
        history: tuple[History, ...] = (),
        presence: tuple[Presence, ...] = (),
        *,
        request_window: float = 300.0,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.app = app
        self.telemetry = telemetry  # None: off, and nothing of OpenTelemetry imported
        self._registry = registry  # the app's registry as it is now
        self._start = start
        self.limits = limits
        self.stats = stats
        self.sessions: dict[str, Session] = {}
        # What the watchdog looks at: connections with a send under way or credentials
        # that expire (each adds itself; the watchdog drops it once it has neither).
        self.watched: set[Session] = set()
        self.connections = ConnectionsView(self.sessions)
        declared = [channel.emitted for channel in registry().channels]
        self.broker = Broker(
            backplane,
            secrets.token_hex(4),
            declared,
            self.sessions.get,
            history,
            presence,
            push_all=push_all,
        )
        if telemetry is not None:
            self.broker.tracing = telemetry
            backplane.round_trip = telemetry.round_trip
        self.requests = Requests(
            self.broker, self.sessions.get, lambda: registry().channels, telemetry
        )
        self.users = Users(self.broker, self.sessions.get)
        self.once = OnceRuns(backplane, self.broker.node_id, request_window, backplane.once_lease)
        self._routers: dict[tuple[Channel, Codec], Router] = {}
        self._opening = 0  # handshakes in their on_connect hooks: they count as connections
        self._watchdog: asyncio.TimerHandle | None = None
        self._idle: asyncio.Event | None = None
        self.refusals = RefusalLog()

    # -- one connection, from the handshake to the teardown ------------------------------

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one WebSocket connection, from ``websocket.connect`` to the hooks after it."""
        session = await self._open(scope, receive, send)
        if session is None:
            return
        code: int | None = CloseCode.GOING_AWAY
        host_cancelled = False
        cancelled: asyncio.CancelledError | None = None
        try:
            if session.accepted(asyncio.current_task()):
                await self.users.join(session)
                code = await session.run(receive)
            else:
                code = None  # aborted during on_connect: its close frame goes now
        except asyncio.CancelledError as exc:
            host_cancelled = session.host_cancelled()
            cancelled = exc
            code = None
        except Exception:
            logger.exception("connection %s to %r failed", session.id, session.channel.address)
            session.abort(CloseCode.INTERNAL_ERROR, "internal error")
            code = None
        try:
            if host_cancelled:
                # A server that gives up on its connections at shutdown (hypercorn
                # after its graceful timeout, uvicorn after its own) would
                # otherwise answer the cancellation with 1011 or a dropped socket.
                with anyio.CancelScope(shield=True):
                    code = await session.going_away()
            elif code is None:
                code = await session.send_abort_close()
        finally:
            if code is None:  # the close frame went out before; or the client went away
                code = CloseCode.GOING_AWAY if host_cancelled else ABNORMAL_CLOSURE
            # Shielded, so that a host that cancels us (a server's graceful
            # timeout, a test client leaving its block) still gets every hook
            # run once; bounded, so that a hook that hangs cannot hang it.
            with anyio.CancelScope(shield=True, deadline=anyio.current_time() + TEARDOWN_LIMIT):
                await self._disconnected(session, code)
        if host_cancelled:
            # The host's own cancellation, as it came: anyio, for one, knows its
            # cancel scope's by its message.
            assert cancelled is not None
            raise cancelled

    async def _open(self, scope: Scope, receive: Receive, send: Send) -> Session | None:
        """Take ``websocket.connect``, route, check, run the hooks and accept; or refuse."""
        message = await receive()
        if message["type"] != "websocket.connect":
            raise RuntimeError(
                f'Expected ASGI message "websocket.connect", but got {message["type"]!r}'
            )
        await self._start()
        registry = self._registry()
        found = registry.match(route_path(scope))
        if found is None:  # no span: a client could mint paths
            await self.deny(scope, send, 404, "no channel at this path")
            return None
        channel, path_params = found
        telemetry = self.telemetry
        if telemetry is None:
            return await self._admit(scope, send, registry, channel, path_params)
        with telemetry.handshake(channel.address) as span:
            session = await self._admit(scope, send, registry, channel, path_params)
            if session is not None:
                telemetry.accepted(span, session.id)
            return session

    async def _admit(
        self,
        scope: Scope,
        send: Send,
        registry: Registry,
        channel: Channel,
        path_params: dict[str, Any],
    ) -> Session | None:
        """Check the handshake to ``channel``, run its hooks and accept it; or refuse it."""
        if not origin_allowed(registry.allowed_origins, scope):
            await self.deny(scope, send, 403, "origin not allowed")
            return None
        limit = self.limits.max_connections
        if limit is not None and len(self.sessions) + self._opening >= limit:
            await self.deny(scope, send, 503, "too many connections")
            return None
        resume = client_session = None
        query = scope.get("query_string", b"")
        if _RESUME in query or _SESSION in query:
            params = QueryParams(query)
            try:
                resume = parse_resume(params.get(RESUME_PARAMETER))
            except BadResume as exc:
                await self.deny(scope, send, 400, str(exc))
                return None
            client_session = params.get(SESSION_PARAMETER)
            if client_session is not None and not valid_session(client_session):
                reason = f"{SESSION_PARAMETER} must be 16 to 128 of A-Z, a-z, 0-9, _ and -"
                await self.deny(scope, send, 400, reason)
                return None
        codec, subprotocol = registry.codecs.negotiate(scope.get("subprotocols") or ())
        # The node id first: send_to finds the process that holds a connection by it.
        connection_id = f"{self.broker.node_id}-{uuid.uuid4().hex[:20]}"
        router = self.router(channel, codec, registry)
        session = Session(
            self,
            connection_id,
            channel,
            send,
            codec,
            router,
            registry,
            scope=scope,
            params=path_params,
            subprotocol=subprotocol,
            resume=resume,
            client_session=client_session,
        )
        conn = session.connection
        self._opening += 1
        try:
            if not await self._handshake(session, conn, channel, scope, send, registry):
                return None
            await session.send_accept(subprotocol)
            self.sessions[session.id] = session
        finally:
            self._opening -= 1
            if session.id not in self.sessions:  # refused, or gone before its accept
                self.watched.discard(session)
        self.stats.connections_total += 1
        self._watch_soon()
        return session

    def router(self, channel: Channel, codec: Codec, registry: Registry) -> Router:
        """The router of ``channel``'s connections in ``codec``: one per pair, built once.

        It holds nothing of a connection; a handler added to the channel since
        it was built makes a new one.
        """
        router = self._routers.get((channel, codec))
        if router is None or router.revision != channel.revision:
            text_decoder, binary_decoder = registry.codecs.decoders(codec)
            router = self._routers[channel, codec] = Router(channel, text_decoder, binary_decoder)
        return router

    def prepare(self) -> None:
        """Build every channel's routers now (at startup), not at its first connection."""
        registry = self._registry()
        for channel in registry.channels:
            for codec in registry.codecs.by_subprotocol.values():
                self.router(channel, codec, registry)

    async def _handshake(
        self,
        session: Session,
        conn: Connection,
        channel: Channel,
        scope: Scope,
        send: Send,
        registry: Registry,
    ) -> bool:
        hooks = (*registry.connect_hooks, *channel.connect_hooks)
        if not hooks:
            return True
        status, reason, code = 0, "", 0
        try:
            # In this task, not another: a ContextVar a hook sets reaches the handlers.
            async with deadline(self.limits.handshake_timeout):
                for hook in hooks:
                    await call_hook(hook, conn, None)
            return True
        except Reject as exc:
            status, reason, code = exc.status, exc.reason, CloseCode.POLICY_VIOLATION
        except BackplaneUnavailable as exc:
            logger.warning("handshake to %r refused: %s", channel.address, exc)
            status, reason, code = 503, "backplane unavailable", CloseCode.TRY_AGAIN_LATER
        except TimeoutError:
            logger.warning("handshake to %r timed out in its on_connect hooks", channel.address)
            status, reason, code = 503, "handshake timed out", CloseCode.TRY_AGAIN_LATER
        except Exception:
            logger.exception("on_connect hook failed on %r", channel.address)
            status, reason, code = 500, "internal error", CloseCode.INTERNAL_ERROR
        await session.finish(code)
        await self.deny(scope, send, status, reason)
        return False

    async def deny(self, scope: Scope, send: Send, status: int, reason: str) -> None:
        """Refuse a handshake with an HTTP status, where the server can send one."""
        self.stats.handshakes_refused[status] += 1
        if self.telemetry is not None:
            self.telemetry.refused(status)
        self.refusals.note(scope, status, reason)
        await deny_handshake(scope, send, status, reason.encode())

    async def _disconnected(self, session: Session, code: int) -> None:
        """Tear down a connection that ended, run its ``on_disconnect`` hooks once, forget it.

        It is forgotten last, so that a shutdown waiting for the connections to
        end also waits for their hooks.
        """
        try:
            await session.finish(code)
            conn = session.connection
            for hook in (*session.registry.disconnect_hooks, *session.channel.disconnect_hooks):
                try:
                    await call_hook(hook, conn, code)
                except Exception:
                    logger.exception("on_disconnect hook failed on %r", session.channel.address)
        finally:
            del self.sessions[session.id]
            self.watched.discard(session)
            if self._idle is not None and not self.sessions:
                self._idle.set()

    # -- the watchdog: send and idle timeouts, without a task or a timer per frame --

    def _watch_soon(self) -> None:
        if self._watchdog is None:
            loop = asyncio.get_running_loop()
            # In a context of its own, not that of the connection whose handshake started it.
            self._watchdog = loop.call_later(
                WATCH_INTERVAL, self._watch, context=contextvars.Context()
            )

    def _watch(self) -> None:
        """Look at the connections with something to time out: all of them where
        ``Limits.idle_timeout`` is set, else those with a send under way or
        credentials that expire (an idle connection costs the watchdog nothing)."""
        self._watchdog = None
        if not self.sessions:
            return  # the next connection starts it again
        now, wall = monotonic(), time()
        watched, sessions = self.watched, self.sessions
        if self.limits.idle_timeout is not None:
            looked = list(sessions.values())
        else:  # accepted ones only, as the handshake's own deadline covers the others
            looked = [session for session in watched if session.id in sessions]
        self.stats.watchdog_looks += len(looked)
        for session in looked:
            if not session.watch(now, wall):
                watched.discard(session)
        self._watch_soon()

    # -- shutdown ------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Close every connection with 1001, all at once; abort those that do not end in time.

        A client that stopped reading cannot hold up the others: each close
        goes through its own connection's writer, and after
        ``SHUTDOWN_GRACE`` seconds what is left is aborted.
        """
        sessions = self.sessions
        for session in list(sessions.values()):
            session.close(CloseCode.GOING_AWAY, "server shutting down")
        await self._wait_idle(SHUTDOWN_GRACE)
        for session in list(sessions.values()):
            session.abort(CloseCode.GOING_AWAY, "server shutting down")
        await self._wait_idle(ABORT_GRACE)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    async def _wait_idle(self, seconds: float) -> None:
        if not self.sessions:
            return
        self._idle = asyncio.Event()
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), seconds)
        self._idle = None


class ConnectionsView(Mapping[str, Connection]):
    """The open connections of a process, by id: read-only."""

    __slots__ = ("_sessions",)

    def __init__(self, sessions: dict[str, Session]) -> None:
        self._sessions = sessions

    def __getitem__(self, connection_id: str) -> Connection:
        return self._sessions[connection_id].connection

    def __iter__(self) -> Iterator[str]:
        return iter(self._sessions)

    def __len__(self) -> int:
        return len(self._sessions)

    def __repr__(self) -> str:
        return f"<connections {list(self._sessions)}>"


def route_path(scope: Scope) -> str:
    """The path to route on: the request's, less the mount's ``root_path``.

    Starlette's ``Mount`` keeps the whole path in ``path`` and the prefix in
    ``root_path``; only a whole level is taken off (``/ws`` from ``/ws/chat``,
    not from ``/wsx``), and a server that left the prefix out is read as it is.
    """
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    rest = path[len(root_path) :]
    return rest if rest == "" or rest.startswith("/") else path
