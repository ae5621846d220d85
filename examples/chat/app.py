"""A chat with rooms: ``uvicorn examples.chat.app:app``, then open http://127.0.0.1:8000/.

Each room is a topic; everyone in a room hears what is said there. Rooms keep
their last 200 publications (docs/resumable-topics.md): a client that drops,
or a tab that reloads, gets what it missed. Who is in a room comes from
presence (docs/presence.md): every member hears who joins and who leaves. Set
``WSEVENTS_BACKPLANE=redis://127.0.0.1:6379/0`` to run several workers or
machines as one chat (docs/deployment.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route

from wsevents import Channel, Connection, EventApp, History, Presence, Reject

MAX_USER_LENGTH = 32

chat = Channel(
    "/chat/{room}",
    title="Chat room",
    description="One room of the chat.",
    query={"user": f"your name in the room, 1 to {MAX_USER_LENGTH} characters (required)"},
)


class Say(BaseModel):
    """Something to say to the room."""

    text: str = Field(
        min_length=1, max_length=500, description="What to say.", examples=["hello, room"]
    )


class Said(BaseModel):
    """Someone said something in the room."""

    user: str
    text: str


class Ping(BaseModel):
    n: int


class Pong(BaseModel):
    n: int


chat.emits("said", model=Said, description="Someone said something in the room.")


@chat.on_connect
async def join(conn: Connection, room: str) -> None:
    """Take the user name from ``?user=`` and join the room's topic as a member."""
    user = conn.query_params.get("user", "").strip()
    if not user:
        raise Reject(403, "a user name is required: add ?user=NAME")
    if len(user) > MAX_USER_LENGTH:
        raise Reject(403, f"a user name has at most {MAX_USER_LENGTH} characters")
    conn.state.user = user
    await conn.subscribe(f"rooms/{room}", presence={"user": user})


@chat.on("say", model=Say)
async def say(conn: Connection, data: Say, room: str) -> None:
    """Say something to everyone in the room."""
    await conn.publish(f"rooms/{room}", "said", Said(user=conn.state.user, text=data.text))


@chat.on("ping", model=Ping, reply=Pong)
async def ping(data: Ping) -> Pong:
    """Answer with the same number: a round-trip check."""
    return Pong(n=data.n)


events = EventApp(
    [chat],
    title="Chat",
    version="1.0.0",
    description="A chat with rooms.",
    backplane=os.environ.get("WSEVENTS_BACKPLANE", "memory://"),
    topics=[History("rooms/+", size=200, ttl=600.0), Presence("rooms/+")],
)

PAGE = (Path(__file__).parent / "index.html").read_text(encoding="utf-8")


async def index(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


app = Starlette(
    routes=[Route("/", index), Mount("/ws", app=events)],
    lifespan=events.lifespan,
)
