"""The handshake's helpers: the origin check, the denial, and what a refusal leaves behind.

A refused handshake never becomes a connection: :func:`deny_handshake`
answers it (the HTTP status and reason where the server offers the denial
response, else a close with 1008). :class:`RefusalLog` keeps why recent
handshakes that asked were refused, for the docs page's console; two log
filters keep uvicorn and asyncio from logging refusals and cancelled
connections as errors.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
from collections import OrderedDict
from time import monotonic

from starlette.types import Scope, Send

from .exceptions import CloseCode

__all__ = [
    "PROBE_PREFIX",
    "RefusalLog",
    "deny_handshake",
    "install_cancelled_connection_filter",
    "install_refusal_filter",
    "origin_allowed",
]


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
