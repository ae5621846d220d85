"""Every ASGI ``send`` of a connection runs whole in one task and one context.

ASGI middleware that traces, reports errors or logs per request sets a
``ContextVar`` around ``send`` and resets it with its token, and may put a
timeout (``asyncio.timeout``, an anyio cancel scope) around it. Both break
when a send's coroutine starts in one task and finishes in another.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from websockets.asyncio.client import connect

from wsevents import Channel, Connection, EventApp, Limits

from .conftest import serve
from .test_limits import never_reading_client

pytestmark = pytest.mark.anyio

PAD = "x" * 200_000
FRAMES = 60

_sending: ContextVar[str | None] = ContextVar("sending", default=None)

if sys.version_info >= (3, 11):
    _deadline = asyncio.timeout
else:

    @asynccontextmanager
    async def _deadline(seconds: float) -> AsyncIterator[None]:
        with anyio.fail_after(seconds):
            yield


class ContextMiddleware:
    """What tracing middleware does: a ContextVar set and reset, and a deadline, around send."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.failures: list[BaseException] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def wrapped(message: Message) -> None:
            token = _sending.set(message["type"])
            try:
                async with _deadline(30):
                    await send(message)
            except BaseException as exc:
                self.failures.append(exc)
                raise
            finally:
                _sending.reset(token)  # raises ValueError in another context

        await self.app(scope, receive, wrapped)


def build() -> tuple[Starlette, EventApp, ContextMiddleware]:
    feed = Channel("/feed")

    @feed.on_connect
    async def join(conn: Connection) -> None:
        await conn.subscribe("feed")

    @feed.on("burst", reply=int)
    async def burst(conn: Connection) -> int:
        for n in range(FRAMES):
            await conn.app.publish("feed", "big", {"n": n, "pad": PAD})
        return FRAMES

    events = EventApp([feed], limits=Limits(rate=None, send_queue=1_000, send_timeout=10))
    middleware = ContextMiddleware(events)
    host = Starlette(routes=[Mount("/ws", app=middleware)], lifespan=events.lifespan)
    return host, events, middleware


def read_frames(sock: socket.socket, count: int, seconds: float) -> list[int]:
    """Read ``count`` unmasked server text frames from a raw socket; return each ``n``."""
    buffer = b""
    found: list[int] = []
    deadline = time.monotonic() + seconds
    sock.settimeout(seconds)
    while len(found) < count:
        assert time.monotonic() < deadline, f"only {len(found)} frames of {count}"
        while True:
            if len(buffer) >= 2:
                opcode, length, start = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
                if length == 126:
                    length, start = int.from_bytes(buffer[2:4], "big"), 4
                elif length == 127:
                    length, start = int.from_bytes(buffer[2:10], "big"), 10
                if len(buffer) >= start + length:
                    payload, buffer = buffer[start : start + length], buffer[start + length :]
                    assert opcode == 0x1, (opcode, payload[:2])  # a close frame: dropped
                    found.append(json.loads(payload)["data"]["n"])
                    break
            chunk = sock.recv(1 << 20)
            assert chunk, f"the server closed the connection after {len(found)} frames"
            buffer += chunk
    return found


async def test_a_paused_subscriber_gets_every_frame_through_context_resetting_middleware() -> None:
    host, events, middleware = build()
    with serve(host) as address:
        with never_reading_client(address, "/ws/feed") as stalled:
            async with connect(f"ws://{address}/ws/feed", max_size=None) as publisher:
                deadline = time.monotonic() + 5
                while len(events.connections) < 2:
                    assert time.monotonic() < deadline, "both clients were not connected"
                    await asyncio.sleep(0.01)
                await publisher.send(json.dumps({"event": "burst", "id": 1}))
                pushed: list[int] = []
                reply: Any = None
                while reply is None or len(pushed) < FRAMES:
                    message = json.loads(await asyncio.wait_for(publisher.recv(), 20))
                    if message["event"] == "big":
                        pushed.append(message["data"]["n"])
                    else:
                        reply = message
                assert pushed == list(range(FRAMES))  # the publisher's own copy, in order
                assert reply == {"event": "burst", "data": FRAMES, "id": 1}
                await asyncio.sleep(1.0)  # the stalled client reads nothing for a second
                frames = await asyncio.to_thread(read_frames, stalled, FRAMES, 20)
                assert frames == list(range(FRAMES))
        stats = events.stats()
    assert middleware.failures == []
    assert stats["closed_by_server"] == {}
