"""An app with presence, for the cluster tests: ``uvicorn tests.apps.presence:app``.

The backplane comes from ``WSEVENTS_BACKPLANE``. ``/room/{room}?user=NAME``
makes the connection a member of ``rooms/{room}`` with ``{"user": NAME}``;
``who`` answers with the topic's members and their count, both read from the
backplane. Members expire 2 s after their process stops refreshing them.
"""

from __future__ import annotations

import os
from typing import Any

from wsevents import Channel, Connection, EventApp, Presence

room = Channel("/room/{room}")


@room.on_connect
async def join(conn: Connection, room: str) -> None:
    await conn.subscribe(f"rooms/{room}", presence={"user": conn.query_params.get("user", "")})


@room.on("who", reply=dict)
async def who(conn: Connection, room: str) -> dict[str, Any]:
    topic = f"rooms/{room}"
    return {
        "members": await conn.app.presence(topic),
        "count": await conn.app.presence_count(topic),
        "node": conn.app.node_id,
    }


app = EventApp(
    [room],
    title="Presence",
    version="1",
    backplane=os.environ.get("WSEVENTS_BACKPLANE", "memory://"),
    topics=[Presence("rooms/+", interval=0.2, ttl=2.0)],
)
