"""The app the second-server tests serve: one of each thing a server has to carry.

Refusals with their own statuses (401, 403, 404, 503), a reply, the
protocol's error frames and a handler's own, pushes to the other clients of
a room; every on_disconnect hook writes ``ID CODE`` to $HOOK_LOG.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, Field

from wsevents import Channel, Connection, EventApp, EventError, Limits, Reject

room = Channel("/room/{name}", query={"token": "good (401 without one, 403 for another)"})


class Order(BaseModel):
    item: str
    count: int = Field(ge=1)


class Shouted(BaseModel):
    text: str


room.emits("shouted", model=Shouted)


@room.on_connect
async def admit(conn: Connection, name: str) -> None:
    token = conn.query_params.get("token")
    if token is None:
        raise Reject(401, "a token is required: add ?token=good")
    if token != "good":
        raise Reject(403, "this token is not allowed")
    await conn.subscribe(f"rooms/{name}")


@room.on("order", errors={"sold_out": "nothing left of this item"})
async def order(data: Order) -> str:
    if data.item == "gold":
        raise EventError("sold_out", "no gold left")
    return f"{data.count} x {data.item}"


@room.on("shout")
async def shout(conn: Connection, data: Shouted, name: str) -> None:
    await conn.publish(f"rooms/{name}", "shouted", data)


@room.on_disconnect
def record(conn: Connection, code: int) -> None:  # a sync hook: it runs in a thread
    with open(os.environ["HOOK_LOG"], "a") as log:
        log.write(f"{conn.id} {code}\n")


app = EventApp([room], title="Portable", version="1", limits=Limits(max_connections=4))
