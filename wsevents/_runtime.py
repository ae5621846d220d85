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
import re
import sys
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, suppress
from time import monotonic
from typing import TYPE_CHECKING

import anyio
from starlette._utils import get_route_path
from starlette.datastructures import QueryParams
from starlette.types import Receive, Scope, Send

from ._connection import Connection
from ._dispatch import Router
from ._history import RESUME_PARAMETER, BadResume, parse_resume
from ._routing import Channel
from ._session import Session, call_hook
from ._stats import Stats
from ._topics import Broker
from .codecs import Codec
from .exceptions import BackplaneUnavailable, CloseCode, Reject

if TYPE_CHECKING:
    from ._app import EventApp
    from ._limits import Limits

__all__ = ["ConnectionsView", "Runtime", "deny_handshake", "origin_allowed"]

logger = logging.getLogger("wsevents")

if sys.version_info >= (3, 11):
    # Not anyio's fail_after where asyncio has a timeout: its cancel scope leaves
    # state behind for the life of the task, about 1.4 kB per open connection.
    from asyncio import timeout as handshake_deadline
else:

    @asynccontextmanager
    async def handshake_deadline(seconds: float | None) -> AsyncIterator[None]:
        """Raise ``TimeoutError`` in this task once ``seconds`` have passed."""
        with anyio.fail_after(seconds):
            yield


_RESUME = RESUME_PARAMETER.encode()
WATCH_INTERVAL = 0.25  # seconds between checks of send and idle timeouts
TEARDOWN_LIMIT = 5.0  # how long the on_disconnect hooks of one connection may take
SHUTDOWN_GRACE = 5.0  # how long shutdown waits for connections to close themselves
ABORT_GRACE = 1.0  # then how long it waits for the ones it aborted
ABNORMAL_CLOSURE = 1006  # the code hooks get when the client went away during the accept


class Runtime:
    """The connections of one app, and what every one of them runs under."""

    def __init__(self, app: EventApp, limits: Limits, broker: Broker, stats: Stats) -> None:
        self.app = app
        self.limits = limits
        self.broker = broker
        self.stats = stats
        self.sessions: dict[str, Session] = broker.sessions
        self.connections = ConnectionsView(self.sessions)
        self.exception_handler_for = app.exception_handler_for
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
        try:
            if session.accepted(asyncio.current_task()):
                code = await session.run(receive)
            else:
                code = None  # aborted during on_connect: its close frame goes now
        except asyncio.CancelledError:
            host_cancelled = session.host_cancelled()
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
            raise asyncio.CancelledError

    async def _open(self, scope: Scope, receive: Receive, send: Send) -> Session | None:
        """Take ``websocket.connect``, route, check, run the hooks and accept; or refuse."""
        app = self.app
        message = await receive()
        if message["type"] != "websocket.connect":
            raise RuntimeError(
                f'Expected ASGI message "websocket.connect", but got {message["type"]!r}'
            )
        await app.ensure_started()
        found = app.match(get_route_path(scope))
        if found is None:
            await self.deny(scope, send, 404, "no channel at this path")
            return None
        if not origin_allowed(app.allowed_origins, scope):
            await self.deny(scope, send, 403, "origin not allowed")
            return None
        limit = self.limits.max_connections
        if limit is not None and len(self.sessions) + self._opening >= limit:
            await self.deny(scope, send, 503, "too many connections")
            return None
        resume = None
        if _RESUME in scope.get("query_string", b""):
            try:
                resume = parse_resume(QueryParams(scope["query_string"]).get(RESUME_PARAMETER))
            except BadResume as exc:
                await self.deny(scope, send, 400, str(exc))
                return None
        channel, params = found
        codec, subprotocol = app.codecs.negotiate(scope.get("subprotocols") or ())
        text_decoder, binary_decoder = app.codecs.decoders(codec)
        # The node id first: send_to finds the process that holds a connection by it.
        connection_id = f"{self.broker.node_id}-{uuid.uuid4().hex[:20]}"
        router = self._routers.get((channel, codec))
        if router is None:  # one per channel and codec: it holds nothing of a connection
            router = self._routers[channel, codec] = Router(channel, text_decoder, binary_decoder)
        session = Session(
            self,
            connection_id,
            channel,
            send,
            codec,
            router,
            scope=scope,
            params=params,
            subprotocol=subprotocol,
            resume=resume,
        )
        conn = session.connection
        self._opening += 1
        try:
            if not await self._handshake(session, conn, channel, scope, send):
                return None
            await session.send_accept(subprotocol)
            self.sessions[session.id] = session
        finally:
            self._opening -= 1
        self.stats.connections_total += 1
        self._watch_soon()
        return session

    async def _handshake(
        self, session: Session, conn: Connection, channel: Channel, scope: Scope, send: Send
    ) -> bool:
        hooks = (*self.app.connect_hooks, *channel.connect_hooks)
        if not hooks:
            return True
        status, reason, code = 0, "", 0
        try:
            # In this task, not another: a ContextVar a hook sets reaches the handlers.
            async with handshake_deadline(self.limits.handshake_timeout):
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
            for hook in (*self.app.disconnect_hooks, *session.channel.disconnect_hooks):
                try:
                    await call_hook(hook, conn, code)
                except Exception:
                    logger.exception("on_disconnect hook failed on %r", session.channel.address)
        finally:
            del self.sessions[session.id]
            if self._idle is not None and not self.sessions:
                self._idle.set()

    # -- the watchdog: send and idle timeouts, without a task or a timer per frame --

    def _watch_soon(self) -> None:
        if self._watchdog is None:
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_later(WATCH_INTERVAL, self._watch)

    def _watch(self) -> None:
        self._watchdog = None
        if not self.sessions:
            return  # the next connection starts it again
        now = monotonic()
        for session in list(self.sessions.values()):
            session.watch(now)
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


PROBE_PREFIX = "wsevents-probe."
_NONCE = re.compile(r"[A-Za-z0-9]{16,64}")


class RefusalLog:
    """Why recent handshakes that asked were refused: for the docs page's console.

    A browser's WebSocket shows a refused handshake only as close code 1006;
    the HTTP status and reason are hidden from the page. The console offers a
    subprotocol ``wsevents-probe.NONCE`` (a random one per attempt), and reads
    the refusal back by that nonce. Only handshakes that offer one are kept,
    at most ``size`` for ``ttl`` seconds: the reason is what that same client
    would have read in the HTTP response.
    """

    def __init__(self, size: int = 256, ttl: float = 60.0) -> None:
        self.size = size
        self.ttl = ttl
        self._found: OrderedDict[str, tuple[float, int, str]] = OrderedDict()

    def note(self, scope: Scope, status: int, reason: str) -> None:
        """Keep the refusal of a handshake that offered a probe subprotocol."""
        for offered in scope.get("subprotocols") or ():
            nonce = offered[len(PROBE_PREFIX) :] if offered.startswith(PROBE_PREFIX) else ""
            if _NONCE.fullmatch(nonce):
                self._found[nonce] = (monotonic(), status, reason)
                self._found.move_to_end(nonce)
                while len(self._found) > self.size:
                    self._found.popitem(last=False)
                return

    def get(self, nonce: str) -> tuple[int, str] | None:
        """The status and reason refused under ``nonce``, if it is recent."""
        found = self._found.get(nonce)
        if found is None or monotonic() - found[0] > self.ttl:
            return None
        return found[1], found[2]


# Set in the task that refused a handshake: uvicorn then logs, from that same
# task, "ASGI callable returned without completing handshake." as an ERROR for
# every denial response (its sans-I/O protocol does not count one as complete).
_REFUSED: contextvars.ContextVar[bool] = contextvars.ContextVar("wsevents_refused", default=False)
_UVICORN_COMPLAINT = "ASGI callable returned without completing handshake"


class _RefusalLogFilter(logging.Filter):
    """Drop uvicorn's handshake complaint where the app refused the handshake on purpose.

    uvicorn already logs the refusal itself (``"WebSocket /path" 401``); an
    ERROR line per refused client made normal refusals read as failures and
    let unauthenticated clients flood the log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_REFUSED.get() and str(record.msg).startswith(_UVICORN_COMPLAINT))


_REFUSAL_FILTER = _RefusalLogFilter()


def install_refusal_filter(logger_name: str = "uvicorn.error") -> None:
    """Keep uvicorn from logging a handshake the app refused as an error; idempotent."""
    logger = logging.getLogger(logger_name)
    if _REFUSAL_FILTER not in logger.filters:
        logger.addFilter(_REFUSAL_FILTER)


# CPython 3.11 and 3.12 log "Exception in callback
# StreamReaderProtocol.connection_made.<locals>.callback" with a CancelledError
# traceback for every stream server connection cancelled, until gh-113538's
# fix (3.13 has it): what hypercorn does to each one still open when its
# graceful timeout runs out.
_STREAM_CALLBACK_NOISE = "Exception in callback StreamReaderProtocol.connection_made.<locals>"


class _CancelledConnectionFilter(logging.Filter):
    """Drop asyncio's traceback for a stream connection cancelled at shutdown (gh-113538).

    Pythons with the fix close such a connection without logging; this drops
    the same record, and only it, on the versions before the fix.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (
            isinstance(exc, asyncio.CancelledError)
            and str(record.msg).startswith(_STREAM_CALLBACK_NOISE)
        )


_CANCELLED_CONNECTION_FILTER = _CancelledConnectionFilter()


def install_cancelled_connection_filter() -> None:
    """Keep asyncio from logging a connection a server cancels at shutdown; idempotent."""
    logger = logging.getLogger("asyncio")
    if _CANCELLED_CONNECTION_FILTER not in logger.filters:
        logger.addFilter(_CANCELLED_CONNECTION_FILTER)


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
        _REFUSED.set(True)
    else:
        reason = body[:123].decode(errors="ignore")  # a close reason fits in 123 bytes
        await send(
            {"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION, "reason": reason}
        )


def origin_allowed(allowed: frozenset[str] | None, scope: Scope) -> bool:
    """Whether the handshake's ``Origin`` is allowed (no ``Origin``: not a browser)."""
    if allowed is None or "*" in allowed:
        return True
    for name, value in scope.get("headers", ()):
        if name == b"origin":
            return value.decode("latin-1").lower().rstrip("/") in allowed
    return True


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
