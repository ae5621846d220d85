"""Bearer tokens at the handshake, and logs that never show them.

::

    from wsevents.auth import BearerAuth

    async def verify(token: str) -> User | None:
        return await users.by_token(token)  # None refuses the handshake with 403

    auth = BearerAuth(verify)
    events.on_connect(auth)      # every channel; or channel.on_connect(auth) for one

A handler then finds the user in ``conn.state.identity``. ``verify`` may
return a :class:`Grant` instead: its ``identity`` goes there, its ``user``
to ``conn.user`` and its ``expires_at`` to ``conn.expires_at``; before that
time the server asks the client ``wsevents.refresh`` for a fresh token,
checked by the same ``verify``, and closes with 4401 at that time without
one (docs/security.md, "Expiring credentials"). Browsers cannot set
headers on a WebSocket, so the token may come three ways, tried in order:
``Authorization: Bearer TOKEN``, a ``Sec-WebSocket-Protocol`` value
``bearer.TOKEN`` (``new WebSocket(url, ["wsevents.json", "bearer." + token])``),
or the query parameter ``?token=TOKEN``. The AsyncAPI document describes the
ones you enable as security schemes.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from ._credentials import check_expiry, check_user
from .exceptions import Reject

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["BearerAuth", "Grant", "bearer_token", "install_redaction", "redact"]

Verify = Callable[[str], Any]


@dataclass(frozen=True)
class Grant:
    """What ``verify`` returns for a token that names a user, or that expires.

    Args:
        identity: what goes to ``conn.state.identity`` (as a plain return
            value of ``verify`` would).
        user: the user the connection belongs to (``conn.user``), or ``None``.
        expires_at: when the token expires, in UNIX seconds (a JWT's ``exp``),
            or ``None``.
    """

    identity: Any
    user: str | None = None
    expires_at: float | None = None

    def __post_init__(self) -> None:
        check_user(self.user)
        object.__setattr__(self, "expires_at", check_expiry(self.expires_at))

    def expired(self) -> bool:
        """Whether ``expires_at`` has passed."""
        return self.expires_at is not None and self.expires_at <= time.time()


def bearer_token(
    conn: Connection,
    *,
    header: bool = True,
    subprotocol_prefix: str | None = "bearer.",
    query_param: str | None = "token",
) -> str | None:
    """Return the bearer token of a handshake, from the first source that has one."""
    if header:
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    if subprotocol_prefix:
        for offered in conn.scope.get("subprotocols") or ():
            if offered.startswith(subprotocol_prefix) and len(offered) > len(subprotocol_prefix):
                return str(offered[len(subprotocol_prefix) :])
    if query_param:
        return conn.query_params.get(query_param) or None
    return None


class BearerAuth:
    """An ``on_connect`` hook that requires a bearer token and checks it.

    Args:
        verify: called with the token (sync or async); returns the identity to
            keep in ``conn.state.<state_attribute>``, or ``None``/``False`` to
            refuse with 403. It may raise ``Reject`` itself.
        header: accept ``Authorization: Bearer TOKEN``.
        subprotocol_prefix: accept a ``Sec-WebSocket-Protocol`` value with this
            prefix (``None`` to refuse this way).
        query_param: accept the token as this query parameter (``None`` to refuse).
        state_attribute: where the identity goes on ``conn.state``.
        refresh_before: for a :class:`Grant` that expires, how many seconds
            ahead the client is asked for a fresh token (``wsevents.refresh``).

    A handshake without a token, or with a grant that has expired, is refused
    with 401. A refreshed token is good only if ``verify`` returns a
    :class:`Grant` for the same user that has not expired: ``expires_at``
    moves on and the identity is replaced. Anything else is a refusal (logged
    once, never the token) and the connection closes with 4401 at its expiry.
    """

    def __init__(
        self,
        verify: Verify,
        *,
        header: bool = True,
        subprotocol_prefix: str | None = "bearer.",
        query_param: str | None = "token",
        state_attribute: str = "identity",
        refresh_before: float = 30.0,
    ) -> None:
        if isinstance(refresh_before, bool) or not isinstance(refresh_before, (int, float)):
            raise TypeError(f"refresh_before must be a number of seconds, got {refresh_before!r}")
        if refresh_before < 0:
            raise ValueError(f"refresh_before must be >= 0, got {refresh_before!r}")
        self.verify = verify
        self.header = header
        self.subprotocol_prefix = subprotocol_prefix
        self.query_param = query_param
        self.state_attribute = state_attribute
        self.refresh_before = float(refresh_before)

    async def __call__(self, conn: Connection) -> None:
        token = bearer_token(
            conn,
            header=self.header,
            subprotocol_prefix=self.subprotocol_prefix,
            query_param=self.query_param,
        )
        if token is None:
            raise Reject(401, "a bearer token is required")
        identity = await self._verified(token)
        if identity is None or identity is False:
            raise Reject(403, "the token was not accepted")
        if isinstance(identity, Grant):
            if identity.expired():
                raise Reject(401, "the token has expired")
            if identity.user is not None:
                conn.user = identity.user
            if identity.expires_at is not None:
                conn.expires_at = identity.expires_at
                conn.refresh_with(partial(self._refreshed, conn), before=self.refresh_before)
            identity = identity.identity
        setattr(conn.state, self.state_attribute, identity)

    async def _verified(self, token: str) -> Any:
        identity = self.verify(token)
        if inspect.isawaitable(identity):
            identity = await identity
        return identity

    async def _refreshed(self, conn: Connection, token: str) -> float | None:
        """Check a refreshed token: a grant for the same user, not expired; its expiry."""
        grant = await self._verified(token)
        if not isinstance(grant, Grant):
            raise Reject(403, "the token was not accepted as a grant")
        if grant.user != conn.user:
            raise Reject(403, "the token is another user's")
        if grant.expired():
            raise Reject(401, "the token has expired")
        setattr(conn.state, self.state_attribute, grant.identity)
        return grant.expires_at

    #: The AsyncAPI document describes ``wsevents.refresh`` on the channels this hook guards.
    asks_refresh = True

    def security_schemes(self) -> dict[str, dict[str, Any]]:
        """The AsyncAPI security schemes this hook accepts, by component key."""
        schemes: dict[str, dict[str, Any]] = {}
        if self.header:
            schemes["bearerHeader"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "`Authorization: Bearer TOKEN` on the handshake.",
            }
        if self.subprotocol_prefix:
            schemes["bearerSubprotocol"] = {
                "type": "httpApiKey",
                "name": "Sec-WebSocket-Protocol",
                "in": "header",
                "description": f"Offer the subprotocol `{self.subprotocol_prefix}TOKEN` beside "
                "`wsevents.json` (browsers cannot set other headers on a WebSocket).",
            }
        if self.query_param:
            schemes["bearerQuery"] = {
                "type": "httpApiKey",
                "name": self.query_param,
                "in": "query",
                "description": f"`?{self.query_param}=TOKEN` on the handshake URL.",
            }
        return schemes


# -- redaction ------------------------------------------------------------------

_SECRETS = re.compile(
    r"(?P<query>\?[^\s\"']+)"
    r"|(?P<bearer>\b[Bb]earer[ .])[^\s\"',]+"
    r"|(?P<param>\b(?:token|access_token|password)=)[^\s\"'&]+"
)


def _replace(found: re.Match[str]) -> str:
    if found.group("query"):
        return "?[redacted]"
    return (found.group("bearer") or found.group("param")) + "[redacted]"


# A frame as the websockets library logs it (uvicorn's debug and trace levels):
# its payload goes where it may carry a token (a wsevents.refresh answer, or any
# frame that names a token), in text or in hex (a MessagePack frame), even when
# the middle of a long payload was left out (only its start names what it is).
_FRAME = re.compile(r"^(?P<head>(?:TEXT|BINARY|CONT) ).*(?P<tail> \[[^\]]*\])$", re.DOTALL)
_TOKEN_FRAME = re.compile(
    r"token|refresh|bearer"
    r"|74 6f 6b 65 6e|72 65 66 72 65 73 68|62 65 61 72 65 72"  # the same in hex
    r"|b0 77 73 65 76 65 6e 74 73",  # MessagePack's "wsevents.refresh", cut after "wsevents"
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """Remove query strings and bearer tokens from a log line, and frames that carry one."""
    if _TOKEN_FRAME.search(text):
        frame = _FRAME.match(text)
        if frame is not None:
            return f"{frame['head']}[redacted]{frame['tail']}"
    return _SECRETS.sub(_replace, text)


class RedactingFilter(logging.Filter):
    """A logging filter that runs :func:`redact` over each record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_argument(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_argument(v) for k, v in record.args.items()}
        return True


def _redact_argument(value: Any) -> Any:
    """A log argument with its secrets gone: a string, or the text of anything else
    (uvicorn's trace level logs whole ASGI scopes and messages, bytes included)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (int, float)) or value is None:
        return value  # %d and %f need numbers, and numbers hold no token
    text = str(value)
    redacted = redact(text)
    return value if redacted == text else redacted


_FILTER = RedactingFilter()
# Filters run only for records logged on the logger itself, not on its children:
# every logger that can see a handshake's URL or headers is named.
REDACTED_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "uvicorn.asgi",
    "wsevents",
    "wsevents.backplane",
    "wsevents.client",
    "wsevents.proxy",
)


def install_redaction(loggers: tuple[str, ...] = REDACTED_LOGGERS) -> None:
    """Redact tokens and query strings in these loggers' records (uvicorn logs the
    handshake's URL, query string included). ``EventApp`` calls this itself."""
    for name in loggers:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
