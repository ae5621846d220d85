"""A connection's user and expiry, and the refresh of its credentials (DESIGN.md section 15).

A connection whose ``on_connect`` hooks set ``conn.user`` or
``conn.expires_at`` gets a :class:`Credentials`; most connections have none
and pay nothing. The runtime's watchdog looks at it a few times a second
(:meth:`Credentials.expired`, :meth:`Credentials.due`): no task and no timer
per connection. Where a hook asked for refreshes (``BearerAuth`` does, with
``conn.refresh_with``), :func:`refresh` asks the client ``wsevents.refresh``
through the same server request as ``conn.request`` and hands the token to
the hook's check; it runs in a task of its own only while a refresh is under
way. A refusal is logged once, without the token, and the connection closes
at its expiry, never before.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._asking import request
from ._envelope import REFRESH_EVENT
from .exceptions import ConnectionGone, EventError, Reject, RequestTimeout

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["REFRESH_EVENT", "Check", "Credentials", "check_expiry", "check_user", "refresh"]

logger = logging.getLogger("wsevents")

MAX_USER_LENGTH = 512

Check = Callable[[str], Awaitable["float | None"]]
"""Takes a refreshed token; returns the new expiry (``None``: none), or raises ``Reject``."""


def check_user(user: object) -> str | None:
    """``user`` if it can name a user (a non-empty string, or ``None``), else ``TypeError``."""
    if user is None:
        return None
    if not isinstance(user, str) or not user or len(user) > MAX_USER_LENGTH:
        raise TypeError(
            f"a user must be a non-empty string of at most {MAX_USER_LENGTH} characters, "
            f"or None; got {type(user).__name__}"
        )
    return user


def check_expiry(expires_at: object) -> float | None:
    """``expires_at`` as UNIX seconds (a number, or ``None``), else ``TypeError``."""
    if expires_at is None:
        return None
    if isinstance(expires_at, bool) or not isinstance(expires_at, (int, float)):
        raise TypeError(f"expires_at must be UNIX seconds or None, got {expires_at!r}")
    if expires_at != expires_at:  # NaN
        raise TypeError("expires_at must be UNIX seconds or None, got NaN")
    return float(expires_at)


class Credentials:
    """Who a connection belongs to, until when, and how its access is refreshed.

    Attributes:
        user: the user, fixed once the handshake is accepted.
        expires_at: when the connection closes with 4401 (UNIX seconds), or ``None``.
        check: what checks a refreshed token (``None``: the client is never asked).
        before: how many seconds ahead of ``expires_at`` the client is asked.
    """

    __slots__ = ("_asked_for", "before", "check", "context", "expires_at", "refreshing", "user")

    def __init__(self) -> None:
        self.user: str | None = None
        self.expires_at: float | None = None
        self.check: Check | None = None
        self.before = 30.0
        self.context: contextvars.Context | None = None  # the connection's, for the refresh
        self.refreshing: asyncio.Task[None] | None = None
        self._asked_for: float | None = None  # the expiry a refresh was asked for

    def expired(self, wall: float) -> bool:
        """Whether the credentials expired at ``wall`` (UNIX seconds)."""
        expires = self.expires_at
        return expires is not None and wall >= expires

    def due(self, wall: float) -> float | None:
        """The expiry to ask a refresh for now, once per expiry; ``None``: none is due."""
        expires = self.expires_at
        if (
            self.check is None
            or expires is None
            or expires == self._asked_for
            or self.refreshing is not None
            or wall < expires - self.before
        ):
            return None
        self._asked_for = expires
        return expires

    def start(self, work: Any) -> None:
        """Run the refresh ``work`` in a task of its own, in the connection's context."""
        context = self.context  # set with check, by Connection.refresh_with
        assert context is not None
        loop = asyncio.get_running_loop()
        # A task copies the context it is created in: this one, the connection's.
        task: asyncio.Task[None] = context.run(loop.create_task, work)
        self.refreshing = task
        task.add_done_callback(self._refreshed)

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        if self.refreshing is task:
            self.refreshing = None

    def stop(self) -> None:
        """The connection ended: a refresh under way is cancelled."""
        task, self.refreshing = self.refreshing, None
        if task is not None:
            task.cancel()


async def refresh(session: Session, credentials: Credentials, expires_at: float) -> None:
    """Ask the client for a fresh token before ``expires_at`` and have it checked.

    A good token moves ``expires_at`` on; anything else is a refusal, logged
    once (never the token), and the connection closes at ``expires_at``.
    """
    check = credentials.check
    assert check is not None
    stats = session.stats
    try:
        answer = await request(
            session,
            REFRESH_EVENT,
            {"expires_at": expires_at},
            max(expires_at - time.time(), 0.0),
        )
        token = answer.get("token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise Reject(400, "the answer carried no token")
        renewed = await check(token)
        if time.time() >= expires_at:
            raise Reject(401, "the token was checked after the credentials expired")
    except ConnectionGone:
        return
    except (Reject, RequestTimeout, EventError) as exc:
        stats.refreshes["refused"] += 1
        logger.info(
            "refresh of connection %s refused (%s): it closes at its expiry",
            session.id,
            _why(exc),
        )
        return
    except Exception as exc:
        # The exception's text may hold the token: its type only, at any level.
        stats.refreshes["failed"] += 1
        logger.warning(
            "refresh of connection %s failed: the check raised %s; it closes at its expiry",
            session.id,
            type(exc).__name__,
        )
        return
    credentials.expires_at = check_expiry(renewed)
    stats.refreshes["refreshed"] += 1


def _why(exc: Exception) -> str:
    if isinstance(exc, RequestTimeout):
        return "no answer before the expiry"
    if isinstance(exc, EventError):
        return f"the client answered {exc.code}"
    assert isinstance(exc, Reject)
    return exc.reason or f"refused with {exc.status}"
