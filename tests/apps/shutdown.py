"""An app for the shutdown test: every on_disconnect hook writes one line to $HOOK_LOG."""

from __future__ import annotations

import asyncio
import os

from wsevents import Channel, Connection, EventApp

channel = Channel("/c")


@channel.on_connect
async def join(conn: Connection) -> None:
    await conn.subscribe("all")


@channel.on("slow", reply=str)
async def slow() -> str:
    await asyncio.sleep(30)  # still running when the server is told to stop
    return "done"


@channel.on("flood")
async def flood(conn: Connection) -> None:
    for n in range(400):  # 20 MB to every subscriber of "all"
        await conn.publish("all", "big", {"n": n, "pad": "x" * 50_000})
        await asyncio.sleep(0.001)


@channel.on_disconnect
def record(conn: Connection, code: int) -> None:  # a sync hook: it runs in a thread
    with open(os.environ["HOOK_LOG"], "a") as log:
        log.write(f"{conn.id} {code}\n")


app = EventApp([channel], title="Shutdown", version="1")
