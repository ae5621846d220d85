"""FastAPI with an HTTP route and the event app mounted under ``/ws``.

``uvicorn examples.fastapi_app:app``: clients connect to ``/ws/notifications``;
``POST /announce`` publishes to every one of them.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel, Field

from wsevents import Channel, Connection, EventApp

notifications = Channel("/notifications", title="Notifications")


class Notice(BaseModel):
    """An announcement for everyone."""

    text: str = Field(min_length=1, max_length=1000)


class Echo(BaseModel):
    text: str


notifications.emits("notice", model=Notice, description="An announcement for everyone.")


@notifications.on_connect
async def listen(conn: Connection) -> None:
    await conn.subscribe("notices")


@notifications.on("echo", model=Echo, reply=Echo)
async def echo(data: Echo) -> Echo:
    """Send the text back."""
    return data


events = EventApp([notifications], title="Notifications", version="1.0.0")

app = FastAPI(title="Notifications", lifespan=events.lifespan)


@app.get("/health")
async def health() -> dict[str, int]:
    """Report the open WebSocket connections."""
    return {"connections": len(events.connections)}


@app.post("/announce", status_code=202)
async def announce(notice: Notice) -> dict[str, str]:
    """Publish ``notice`` to every connected client."""
    await events.publish("notices", "notice", notice)
    return {"status": "published"}


app.mount("/ws", events)
