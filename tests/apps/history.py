"""An app with history topics, for the resume tests: ``uvicorn tests.apps.history:app``.

The backplane comes from ``WSEVENTS_BACKPLANE``. ``/room/{room}`` subscribes
to ``rooms/{room}`` (a history topic, 2,000 kept); ``say`` publishes there and
answers with the position; ``burst`` publishes ``count`` numbered messages.
"""

from __future__ import annotations

import os

from pydantic import BaseModel

from wsevents import Channel, Connection, EventApp, History

room = Channel("/room/{room}")


class Say(BaseModel):
    text: str


class Burst(BaseModel):
    topic: str
    count: int


class At(BaseModel):
    epoch: str
    offset: int


room.emits("said", model=Say, description="Something said in the room.")


@room.on_connect
async def join(conn: Connection, room: str) -> None:
    await conn.subscribe(f"rooms/{room}")


@room.on("say", model=Say, reply=At)
async def say(conn: Connection, data: Say, room: str) -> At:
    position = await conn.publish(f"rooms/{room}", "said", data)
    assert position is not None
    return At(epoch=position.epoch, offset=position.offset)


@room.on("burst", model=Burst, reply=At)
async def burst(conn: Connection, data: Burst) -> At:
    """Publish ``count`` messages, numbered from 0, to ``topic``; answer with the last position."""
    position = None
    for n in range(data.count):
        position = await conn.publish(data.topic, "said", Say(text=str(n)))
    assert position is not None
    return At(epoch=position.epoch, offset=position.offset)


app = EventApp(
    [room],
    title="History",
    version="1",
    backplane=os.environ.get("WSEVENTS_BACKPLANE", "memory://"),
    topics=[History("rooms/+", size=2000, ttl=600.0, publish_timeout=2.0)],
)
