"""The chat example without history: ``uvicorn tests.apps.chat_live:app``.

The same channel as ``examples.chat.app``, its rooms plain topics: what the
test of Redis restarts checks is that live delivery goes on through them,
where a history topic's publish refuses by design (docs/resumable-topics.md).
Its rooms keep members (the channel subscribes with ``presence=``), without
diffs: the clients hear only what is said.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.routing import Mount

from examples.chat.app import chat
from wsevents import EventApp, Presence

events = EventApp(
    [chat],
    title="Chat (live only)",
    version="1.0.0",
    backplane=os.environ.get("WSEVENTS_BACKPLANE", "memory://"),
    topics=[Presence("rooms/+", diffs=False)],
)

app = Starlette(routes=[Mount("/ws", app=events)], lifespan=events.lifespan)
