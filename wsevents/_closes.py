"""How a Python client's connection ends, and what it does next: close codes and tokens.

The server's close code decides whether the client reconnects: never after
4403 (the app ended the connection, ``EventApp.disconnect``), after 4401
(credentials expired, or a refresh refused) only with a ``token`` function,
which is called for a fresh token first; after anything else, yes. A token
is a string or a function (sync or async) returning one; it goes in
``Authorization: Bearer`` and answers ``wsevents.refresh``.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ._retry import Backoff
from .exceptions import CloseCode, Reject

__all__ = [
    "ConnectionClosedByServer",
    "ConnectionLost",
    "Token",
    "call_back",
    "check_token",
    "lost",
    "reconnect",
    "reconnects_after",
    "token_of",
]

logger = logging.getLogger("wsevents.client")

Token = str | Callable[[], "str | Awaitable[str]"]


class ConnectionLost(ConnectionError):
    """The connection closed before a request was answered, or the client gave up.

    ``code`` and ``reason`` are the server's close code and reason where the
    server closed it (4403: the app ended it; 4401: its credentials expired).
    """

    def __init__(self, message: str, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class ConnectionClosedByServer(ConnectionError):
    """The connection ended: with the server's close code and reason, or ``None`` (dropped)."""

    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"closed by the server with {code}: {reason or ''}".rstrip(": "))
        self.code = code
        self.reason = reason or ""


def lost(error: BaseException, prefix: str = "") -> ConnectionLost:
    """The ``ConnectionLost`` for a connection that ended with ``error``, its close code kept."""
    code = getattr(error, "code", None)
    reason = getattr(error, "reason", None) or ""
    return ConnectionLost(f"{prefix}{error}", code if isinstance(code, int) else None, str(reason))


def reconnects_after(code: int | None, token: Token | None) -> bool:
    """Whether a client reconnects after the server closed with ``code``."""
    if code == CloseCode.ENDED_BY_APP:
        return False
    return code != CloseCode.CREDENTIALS_EXPIRED or callable(token)


async def reconnect(
    connect: Callable[[], Awaitable[None]], backoff: tuple[float, float], max_attempts: int | None
) -> None:
    """Call ``connect`` until it connects, waiting ``backoff`` between attempts.

    Raises:
        ConnectionLost: ``max_attempts`` failed in a row.
        Reject: the server refused the handshake for good (a status below 500).
        Exception: what the token function raised.
    """
    waits = Backoff(*backoff)
    for attempt in itertools.count(1):
        if max_attempts is not None and attempt > max_attempts:
            raise ConnectionLost(f"no connection after {max_attempts} attempts")
        await asyncio.sleep(waits.next())
        try:
            await connect()
        except Reject as exc:
            if exc.status < 500:  # refused for good: asking again will not help
                raise
            logger.info("reconnect attempt %d refused: %s", attempt, exc)
        except (OSError, asyncio.TimeoutError) as exc:
            logger.info("reconnect attempt %d failed: %s", attempt, exc)
        else:
            return


def check_token(token: object) -> Token | None:
    """``token`` if it is one (a string, a function or ``None``), else ``TypeError``."""
    if token is not None and not isinstance(token, str) and not callable(token):
        raise TypeError(f"token must be a string or a function, got {token!r}")
    return token


async def token_of(token: Token) -> str:
    """The token to send now: the string, or what the function returns (awaited)."""
    value: Any = token() if callable(token) else token
    if inspect.isawaitable(value):
        value = await value
    if not isinstance(value, str) or not value:
        raise TypeError("the token function must return a non-empty string")
    return value


async def call_back(name: str, callback: Callable[..., Any] | None, *args: Any) -> None:
    """Call an app's callback (it may be async); what it raises is logged, not raised."""
    if callback is None:
        return
    try:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("%s failed", name)
