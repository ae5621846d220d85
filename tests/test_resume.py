"""Resumable topics across processes: real uvicorn, real redis-server, the Python client."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from wsevents import Position
from wsevents.client import Client, connect

from .conftest import RedisServer, uvicorn_process

pytestmark = pytest.mark.anyio


class Collector:
    """What one client heard of a topic: pushes with their offsets, and ``wsevents.subscribed``."""

    def __init__(self, client: Client) -> None:
        self.offsets: list[int] = []
        self.texts: list[str] = []
        self.subscribed: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        client.on("said", self._said)
        client.on("wsevents.subscribed", self._subscribed)
        self.client = client

    def _said(self, data: dict[str, Any]) -> None:
        self.texts.append(data["text"])
        self.offsets.append(self.client.positions["rooms/r"].offset)
        self._changed.set()

    def _subscribed(self, data: dict[str, Any]) -> None:
        self.subscribed.append(data)
        self._changed.set()

    async def until(self, done: Any, timeout: float = 20.0) -> None:
        async def wait() -> None:
            while not done():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)


@pytest.mark.parametrize("back_to", ["the same process", "the other process"])
async def test_a_client_that_missed_1000_publications_gets_each_once_in_order(
    redis_server: RedisServer, tmp_path: Path, back_to: str
) -> None:
    env = {"WSEVENTS_BACKPLANE": redis_server.url}
    with (
        uvicorn_process("tests.apps.history:app", tmp_path / "1.log", env=env) as (one, _),
        uvicorn_process("tests.apps.history:app", tmp_path / "2.log", env=env) as (two, _),
    ):
        async with connect(f"ws://127.0.0.1:{one}/room/r", reconnect=False) as ann:
            heard = Collector(ann)
            await heard.until(lambda: heard.subscribed)
            assert heard.subscribed[0]["recovered"] is None
            at = await ann.request("say", {"text": "before"})
            await heard.until(lambda: heard.texts == ["before"])
            held = dict(ann.positions)
        assert held == {"rooms/r": Position(at["epoch"], at["offset"])}
        # Gone: 1,000 publications from the other process meanwhile.
        async with connect(f"ws://127.0.0.1:{two}/room/other") as bob:
            last = await bob.request("burst", {"topic": "rooms/r", "count": 1000}, timeout=60)
        assert last["offset"] == at["offset"] + 1000
        port = one if back_to == "the same process" else two
        resumed = Client(f"ws://127.0.0.1:{port}/room/r", resume=held)
        heard = Collector(resumed)
        async with resumed:
            await heard.until(lambda: heard.subscribed)
            assert heard.subscribed == [
                {
                    "topic": "rooms/r",
                    "epoch": at["epoch"],
                    "offset": last["offset"],
                    "recovered": True,
                }
            ]
            # All before wsevents.subscribed: the replay, each once, in order.
            assert heard.texts == [str(n) for n in range(1000)]
            assert heard.offsets == list(range(at["offset"] + 1, last["offset"] + 1))
            assert resumed.duplicates == 0
            after = await resumed.request("say", {"text": "live"})
            await heard.until(lambda: heard.texts[-1:] == ["live"])
            assert heard.offsets[-1] == after["offset"] == last["offset"] + 1


async def test_a_publication_lost_by_pub_sub_is_filled_from_the_history(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A process that hears offset n+2 after n delivers n+1 first, read from the history."""
    import redis.asyncio as redis

    from wsevents.backplane.redis import _APPEND  # the script, to publish where nobody hears

    env = {"WSEVENTS_BACKPLANE": redis_server.url}
    with uvicorn_process("tests.apps.history:app", tmp_path / "1.log", env=env) as (port, _):
        async with connect(f"ws://127.0.0.1:{port}/room/r", reconnect=False) as ann:
            heard = Collector(ann)
            await heard.until(lambda: heard.subscribed)
            first = await ann.request("say", {"text": "one"})
            # Kept in the history, published on a channel nobody hears: a pub/sub drop.
            store = redis.Redis.from_url(redis_server.url)
            dropped = store.register_script(_APPEND)
            import msgpack

            message = {"t": "rooms/r", "e": "said", "d": {"text": "two"}, "x": [], "i": "test:1"}
            keys = ["wsevents:meta:rooms/r", "wsevents:history:rooms/r", "wsevents:result:test:1"]
            args = [msgpack.packb(message), 2000, 600_000, "nowhere", "unused", 86400, 60_000]
            offset, _ = await dropped(keys=keys, args=args)
            await store.aclose()
            assert offset == first["offset"] + 1
            await ann.request("say", {"text": "three"})
            await heard.until(lambda: len(heard.texts) == 3)
            assert heard.texts == ["one", "two", "three"]
            assert heard.offsets == [first["offset"] + n for n in range(3)]
            assert [s["recovered"] for s in heard.subscribed] == [None]  # no gap reported
