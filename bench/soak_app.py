"""The app `make soak` drives: one room, a ping, and a firehose for the slow client."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field

from wsevents import Channel, Connection, EventApp

room = Channel("/room")


class Say(BaseModel):
    text: str = Field(max_length=10_000)


class Ping(BaseModel):
    n: int


@room.on_connect
async def join(conn: Connection) -> None:
    for topic in conn.query_params.getlist("sub") or ["room"]:
        await conn.subscribe(topic)


@room.on("say", model=Say)
async def say(conn: Connection, data: Say) -> None:
    await conn.publish("room", "said", {"text": data.text})


@room.on("pour", model=Say)
async def pour(conn: Connection, data: Say) -> None:
    await conn.publish("firehose", "drop", {"text": data.text})


@room.on("ping", model=Ping, reply=Ping)
async def ping(data: Ping) -> Ping:
    return data


app = EventApp(
    [room],
    title="Soak",
    version="1",
    backplane=os.environ.get("WSEVENTS_BACKPLANE", "memory://"),
    metrics_url="/metrics",
)
