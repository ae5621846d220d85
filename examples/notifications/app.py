"""Notifications: server push, wildcard topics, one user at a time, and HTTP that publishes.

``uvicorn examples.notifications.app:app``, then:

- a client connects to ``ws://127.0.0.1:8000/ws/inbox?user=ann`` and says which
  topics it follows: ``{"event": "follow", "data": {"pattern": "alerts/#"}}``;
- ``POST /publish`` with ``{"topic": "alerts/fire/floor-2", "title": "...", "body": "..."}``
  pushes a ``notification`` to every follower whose pattern matches, in every
  process (set ``WSEVENTS_BACKPLANE=redis://...`` for more than one);
- ``POST /users/ann/messages`` with ``{"text": "..."}`` pushes a ``direct`` message
  to ann's connections only, wherever they are: each connection belongs to its
  user (``conn.user``) and ``send_to_user`` finds them; ``POST
  /connections/<id>/messages`` reaches one connection through ``send_to`` (a
  client learns its id with ``whoami``).
"""

from __future__ import annotations

import os

from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from wsevents import Channel, Connection, EventApp, EventError, Reject, TopicError

inbox = Channel(
    "/inbox",
    title="Inbox",
    description="Notifications for one user.",
    query={"user": "who you are: a name of 1 to 64 characters (required)"},
)


class Notification(BaseModel):
    """Something happened on a topic the client follows."""

    topic: str
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=2000)


class Direct(BaseModel):
    """A message for one user (or one connection) only."""

    text: str = Field(min_length=1, max_length=2000)


class Follow(BaseModel):
    """A topic or an MQTT pattern: ``news/+`` (one level), ``alerts/#`` (any depth)."""

    pattern: str = Field(min_length=1, max_length=200)


class Whoami(BaseModel):
    user: str
    connection_id: str


inbox.emits("notification", model=Notification, description="A notification on a followed topic.")
inbox.emits("direct", model=Direct, description="A message for this user only.")


@inbox.on_connect
async def sign_in(conn: Connection) -> None:
    """Take the user from ``?user=`` (a real app takes it from a token: docs/security.md)."""
    user = conn.query_params.get("user", "").strip()
    if not user or len(user) > 64:
        raise Reject(403, "a user name is required: add ?user=NAME")
    conn.user = user


@inbox.on(
    "follow",
    model=Follow,
    errors={"bad_topic": "not a pattern, or one that starts with a wildcard"},
)
async def follow(conn: Connection, data: Follow) -> None:
    """Follow a topic or a pattern; a bad pattern is answered with ``bad_topic``.

    The first level must be named: a client follows a part of the tree, not all of it.
    """
    if data.pattern.split("/")[0] in ("+", "#"):
        raise EventError("bad_topic", "start with a named topic")
    try:
        await conn.subscribe(data.pattern)
    except TopicError as exc:
        raise EventError("bad_topic", str(exc)) from None


@inbox.on("unfollow", model=Follow)
async def unfollow(conn: Connection, data: Follow) -> None:
    """Stop following a pattern."""
    await conn.unsubscribe(data.pattern)


@inbox.on("whoami", reply=Whoami)
async def whoami(conn: Connection) -> Whoami:
    """Tell the client its user name and connection id."""
    return Whoami(user=str(conn.user), connection_id=conn.id)


events = EventApp(
    [inbox],
    title="Notifications",
    version="1.0.0",
    description="Notifications by topic, pushed over WebSocket, published over HTTP.",
    backplane=os.environ.get("WSEVENTS_BACKPLANE", "memory://"),
)


async def read(request: Request, model: type[BaseModel]) -> BaseModel | JSONResponse:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        return JSONResponse({"detail": errors}, status_code=422)


async def publish(request: Request) -> JSONResponse:
    """``POST /publish``: a notification for everyone who follows a matching pattern."""
    found = await read(request, Notification)
    if isinstance(found, JSONResponse):
        return found
    assert isinstance(found, Notification)
    try:
        await events.publish(found.topic, "notification", found)
    except TopicError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=422)
    return JSONResponse({"published": found.topic}, status_code=202)


async def message_user(request: Request) -> JSONResponse:
    """``POST /users/{user}/messages``: a direct message to every connection of one user."""
    found = await read(request, Direct)
    if isinstance(found, JSONResponse):
        return found
    user = request.path_params["user"]
    await events.send_to_user(user, "direct", found)
    return JSONResponse({"sent_to": user}, status_code=202)


async def message_connection(request: Request) -> JSONResponse:
    """``POST /connections/{id}/messages``: a direct message to one connection (``send_to``)."""
    found = await read(request, Direct)
    if isinstance(found, JSONResponse):
        return found
    await events.send_to(request.path_params["connection_id"], "direct", found)
    return JSONResponse({"sent_to": request.path_params["connection_id"]}, status_code=202)


app = Starlette(
    routes=[
        Route("/publish", publish, methods=["POST"]),
        Route("/users/{user}/messages", message_user, methods=["POST"]),
        Route("/connections/{connection_id}/messages", message_connection, methods=["POST"]),
        Mount("/ws", app=events),
    ],
    lifespan=events.lifespan,
)
