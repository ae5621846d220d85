"""Accounts: users signed in with expiring JWTs, messages to a user, signing out everywhere.

``uvicorn examples.accounts.app:app``, then:

- ``POST /login`` with ``{"user": "ann"}`` returns ``{"token": "..."}``: a JWT
  for ann, good for 15 minutes (a demo login: no password);
- a client connects to ``ws://127.0.0.1:8000/ws/inbox`` with that token
  (``Authorization: Bearer``, the subprotocol ``bearer.TOKEN`` or
  ``?token=``): ``conn.user`` is ann, and before the token expires the server
  asks the client for a fresh one (``wsevents.refresh``);
- ``POST /users/ann/messages`` with ``{"text": "..."}`` reaches every
  connection of ann, in every process (``send_to_user``);
- ``POST /users/ann/logout`` revokes ann's tokens and closes every connection
  of hers with 4403, wherever they are (``disconnect``).

Set ``WSEVENTS_BACKPLANE=redis://...`` for more than one process, and
``ACCOUNTS_SECRET`` to sign the tokens with a secret of your own.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jwt
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from wsevents import Channel, Connection, EventApp, Reject
from wsevents.auth import BearerAuth, Grant

SECRET = os.environ.get("ACCOUNTS_SECRET", "change-me-to-a-long-random-secret")
LIFETIME = 900.0  # seconds a token is good for
# The version of each user's tokens: a logout moves it on, and older tokens are refused.
# (In one process here; keep it in your database.)
VERSIONS: dict[str, int] = {}


def issue(user: str) -> str:
    """A token for ``user``: who (``sub``), until when (``exp``), which version (``ver``)."""
    claims = {"sub": user, "exp": int(time.time() + LIFETIME), "ver": VERSIONS.get(user, 0)}
    return jwt.encode(claims, SECRET, algorithm="HS256")


REQUIRED = {"require": ["sub", "exp"]}


def verify(token: str) -> Grant | None:
    """The handshake's check, and each refresh's: a valid JWT of the user's current version."""
    try:
        claims = jwt.decode(token, SECRET, algorithms=["HS256"], options=REQUIRED)
    except jwt.ExpiredSignatureError:
        raise Reject(401, "the token has expired") from None
    except jwt.InvalidTokenError:
        return None  # refused: 403 at the handshake, a refusal at a refresh
    if claims.get("ver") != VERSIONS.get(claims["sub"], 0):
        return None  # signed out since
    return Grant(identity=claims, user=claims["sub"], expires_at=claims["exp"])


inbox = Channel("/inbox", title="Inbox", description="Messages for the signed-in user.")
auth = BearerAuth(verify, refresh_before=60)
inbox.on_connect(auth)


class Text(BaseModel):
    """A message for one user, on every connection of theirs."""

    text: str = Field(min_length=1, max_length=2000)


class Me(BaseModel):
    user: str
    expires_at: float


inbox.emits("message", model=Text, description="A message for this user.")


@inbox.on("whoami", reply=Me)
async def whoami(conn: Connection) -> Me:
    """Who this connection belongs to, and until when its token is good."""
    return Me(user=str(conn.user), expires_at=conn.expires_at or 0.0)


events = EventApp(
    [inbox],
    title="Accounts",
    version="1.0.0",
    description="Signed-in users, messages to a user, and signing out everywhere.",
    backplane=os.environ.get("WSEVENTS_BACKPLANE", "memory://"),
)


class Login(BaseModel):
    user: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_-]+$")


async def read(request: Request, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        return JSONResponse({"detail": errors}, status_code=422)


async def login(request: Request) -> JSONResponse:
    """``POST /login``: a token for the user (a demo: a real login checks a password)."""
    found = await read(request, Login)
    if isinstance(found, JSONResponse):
        return found
    return JSONResponse({"token": issue(found.user)})


async def message(request: Request) -> JSONResponse:
    """``POST /users/{user}/messages``: a message to every connection of that user."""
    found = await read(request, Text)
    if isinstance(found, JSONResponse):
        return found
    await events.send_to_user(request.path_params["user"], "message", found)
    return JSONResponse({"sent_to": request.path_params["user"]}, status_code=202)


async def logout(request: Request) -> JSONResponse:
    """``POST /users/{user}/logout``: revoke the user's tokens, then end their connections."""
    user = request.path_params["user"]
    VERSIONS[user] = VERSIONS.get(user, 0) + 1  # first, so that no handshake gets in after
    await events.disconnect(user=user, reason="signed out")
    return JSONResponse({"signed_out": user})


app = Starlette(
    routes=[
        Route("/login", login, methods=["POST"]),
        Route("/users/{user}/messages", message, methods=["POST"]),
        Route("/users/{user}/logout", logout, methods=["POST"]),
        Mount("/ws", app=events),
    ],
    lifespan=events.lifespan,
)
