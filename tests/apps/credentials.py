"""An app for the credential tests: ``uvicorn tests.apps.credentials:app``.

The backplane comes from ``WSEVENTS_BACKPLANE`` (memory by default). A token
is ``USER|EXPIRES_AT|SECRET`` (``EXPIRES_AT`` in UNIX seconds, ``-`` for
none): ``verify`` grants it to ``USER`` until then. ``plain|-|SECRET`` is a
plain identity (no user, no expiry), ``refuse|-|SECRET`` is refused and
``raise|-|SECRET`` makes ``verify`` raise, with the token in its message
(which must never reach a log line); a ``SECRET`` starting with ``slow``
takes ``verify`` 3 s.

- ``/me``: ``BearerAuth`` with ``refresh_before`` from ``WSEVENTS_REFRESH_BEFORE`` (1 s).
- ``/hooked?user=U&ttl=S``: no ``BearerAuth``; a hook sets ``conn.user`` and
  ``conn.expires_at`` itself.

On both: ``whoami``, ``tell`` (``send_to_user``), ``end`` (``disconnect``)
and ``expire_in`` (a handler moves ``conn.expires_at``).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from pydantic import BaseModel

from wsevents import Channel, Connection, EventApp, Reject
from wsevents.auth import BearerAuth, Grant

VERIFIED: list[str] = []  # the users whose tokens verify saw, in order


async def verify(token: str) -> Any:
    user, _, rest = token.partition("|")
    expires, _, secret = rest.partition("|")
    if not secret:
        return None
    if secret.startswith("slow"):
        await asyncio.sleep(3.0)  # a verify slower than the time left
    VERIFIED.append(user)
    if user == "refuse":
        return None
    if user == "raise":
        raise RuntimeError(f"cannot read the token {token}")
    if user == "plain":
        return {"plain": secret}
    return Grant(
        identity={"user": user, "secret": secret},
        user=user,
        expires_at=None if expires == "-" else float(expires),
    )


me = Channel("/me")
me.on_connect(
    BearerAuth(verify, refresh_before=float(os.environ.get("WSEVENTS_REFRESH_BEFORE", "1")))
)
hooked = Channel("/hooked")


@hooked.on_connect
async def from_query(conn: Connection) -> None:
    user = conn.query_params.get("user")
    if user is None:
        raise Reject(403, "?user= is required")
    conn.user = user
    ttl = conn.query_params.get("ttl")
    if ttl is not None:
        conn.expires_at = time.time() + float(ttl)


class Tell(BaseModel):
    user: str
    text: str


class End(BaseModel):
    id: str | None = None
    user: str | None = None
    reason: str = ""


class ExpireIn(BaseModel):
    seconds: float | None


for channel in (me, hooked):
    channel.emits("told", model=Tell)

    @channel.on("whoami", reply=dict[str, Any])
    async def whoami(conn: Connection) -> dict[str, Any]:
        identity = getattr(conn.state, "identity", None)
        return {
            "id": conn.id,
            "user": conn.user,
            "expires_at": conn.expires_at,
            "identity": identity,
            "node": conn.app.node_id,
            "topics": sorted(conn.topics),
        }

    @channel.on("tell", model=Tell)
    async def tell(conn: Connection, data: Tell) -> None:
        await conn.app.send_to_user(data.user, "told", data)

    @channel.on("end", model=End)
    async def end(conn: Connection, data: End) -> None:
        await conn.app.disconnect(data.id, user=data.user, reason=data.reason)

    @channel.on("expire_in", model=ExpireIn)
    async def expire_in(conn: Connection, data: ExpireIn) -> None:
        conn.expires_at = None if data.seconds is None else time.time() + data.seconds

    @channel.on("set_user", model=str)
    async def set_user(conn: Connection, data: str) -> None:
        conn.user = data  # refused after the handshake: internal_error


app = EventApp(
    [me, hooked],
    title="Credentials",
    version="1",
    backplane=os.environ.get("WSEVENTS_BACKPLANE", "memory://"),
)
