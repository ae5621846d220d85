"""An app for the multi-process tests: ``uvicorn tests.apps.cluster:app``.

The backplane comes from ``WSEVENTS_BACKPLANE``. A client names its
subscriptions in the query string (``?sub=news/+&sub=alerts/#``) and drives
publish and send_to with events.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel

from wsevents import Channel, Connection, EventApp

node = Channel("/node")


class Publish(BaseModel):
    topic: str
    text: str


class SendTo(BaseModel):
    id: str
    text: str


@node.on_connect
async def subscribe(conn: Connection) -> None:
    for subscription in conn.query_params.getlist("sub"):
        await conn.subscribe(subscription)


@node.on("whoami", reply=str)
async def whoami(conn: Connection) -> str:
    return conn.id


@node.on("publish", model=Publish)
async def publish(conn: Connection, data: Publish) -> None:
    await conn.app.publish(data.topic, "news", {"topic": data.topic, "text": data.text})


@node.on("send_to", model=SendTo)
async def send_to(conn: Connection, data: SendTo) -> None:
    await conn.app.send_to(data.id, "direct", {"text": data.text})


@node.on("stats", reply=dict[str, Any])
async def stats(conn: Connection) -> dict[str, Any]:
    return {"ready": conn.app.ready, **conn.app.backplane.stats}


app = EventApp([node], title="Cluster", version="1", backplane=os.environ["WSEVENTS_BACKPLANE"])
