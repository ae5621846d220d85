"""Resumable topics across processes: real uvicorn, real redis-server, the Python client."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wsevents import Position, Reject
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

    from wsevents.backplane._scripts import APPEND  # the script, to publish where nobody hears

    env = {"WSEVENTS_BACKPLANE": redis_server.url}
    with uvicorn_process("tests.apps.history:app", tmp_path / "1.log", env=env) as (port, _):
        async with connect(f"ws://127.0.0.1:{port}/room/r", reconnect=False) as ann:
            heard = Collector(ann)
            await heard.until(lambda: heard.subscribed)
            first = await ann.request("say", {"text": "one"})
            # Kept in the history, published on a channel nobody hears: a pub/sub drop.
            store = redis.Redis.from_url(redis_server.url)
            dropped = store.register_script(APPEND)
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


class Connection:
    """One connection of a resuming client: what it was told and heard, in order."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.named = client.positions.get("rooms/r")  # the position it resumes from
        self.frames: list[tuple[str, str, int, bool | None]] = []  # kind, epoch, offset, recovered
        client.on("said", self._said)
        client.on("wsevents.subscribed", self._subscribed)

    def _said(self, data: dict[str, Any]) -> None:
        epoch, offset = self.client.positions["rooms/r"]
        self.frames.append(("push", epoch, offset, None))

    def _subscribed(self, data: dict[str, Any]) -> None:
        self.frames.append(("subscribed", data["epoch"], data["offset"], data["recovered"]))

    def recovered(self) -> bool | None:
        """The ``recovered`` of the first ``wsevents.subscribed``."""
        return next(frame[3] for frame in self.frames if frame[0] == "subscribed")

    def gaps(self) -> list[str]:
        """Every place where offsets are not consecutive without a ``recovered: false`` saying so.

        A replay comes before the first ``wsevents.subscribed``, from the named position on.
        """
        found: list[str] = []
        held = None if self.named is None else (self.named.epoch, self.named.offset)
        for kind, epoch, offset, recovered in self.frames:
            if kind == "subscribed":
                if recovered is not True:
                    held = (epoch, offset)
                elif (epoch, offset) != held:
                    found.append(f"subscribed at {epoch}/{offset} after {held}")
                    held = (epoch, offset)
            elif held is None or (epoch, offset) != (held[0], held[1] + 1):
                found.append(f"push {epoch}/{offset} after {held}")
                held = (epoch, offset)
            else:
                held = (epoch, offset)
        return found


async def open_resumed(url: str, positions: dict[str, Position]) -> Connection:
    """Connect naming ``positions``; a 503 (the backplane still away) is tried again."""
    for _ in range(50):
        client = Client(url, resume=positions, reconnect=False)
        connection = Connection(client)
        try:
            await client.open()
        except Reject as exc:
            if exc.status != 503:
                raise
            await asyncio.sleep(0.2)
            continue
        frames = connection.frames
        await until(lambda: any(f[0] == "subscribed" for f in frames))  # noqa: B023
        return connection
    raise AssertionError("no connection within 10 s")


@contextlib.contextmanager
def two_processes(tmp_path: Path, *, persistent: bool) -> Iterator[tuple[RedisServer, int, int]]:
    """A redis-server (appending every write to its file, or keeping nothing) and two apps on it."""
    redis_server = RedisServer(tmp_path, persistent=persistent)
    redis_server.start()
    env = {"WSEVENTS_BACKPLANE": redis_server.url}
    try:
        with (
            uvicorn_process("tests.apps.history:app", tmp_path / "1.log", env=env) as (one, _),
            uvicorn_process("tests.apps.history:app", tmp_path / "2.log", env=env) as (two, _),
        ):
            yield redis_server, one, two
    finally:
        redis_server.kill()


async def until(done: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not done():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("persistent", [True, False], ids=["appendonly", "no persistence"])
async def test_resumes_across_ten_redis_restarts_recover_or_say_so_and_never_skip(
    tmp_path: Path, persistent: bool
) -> None:
    with two_processes(tmp_path, persistent=persistent) as (redis_server, one, two):
        urls = [f"ws://127.0.0.1:{port}/room/r" for port in (one, two)]
        publisher = Client(f"ws://127.0.0.1:{one}/room/p", reconnect=True)
        await publisher.open()
        stop = asyncio.Event()

        async def publish() -> None:  # a publication every 20 ms; refused ones are fine
            while not stop.is_set():
                with contextlib.suppress(Exception):
                    await publisher.send("burst", {"topic": "rooms/r", "count": 1})
                await asyncio.sleep(0.02)

        publishing = asyncio.ensure_future(publish())
        clients = [await open_resumed(url, {}) for url in urls]
        connections = list(clients)
        for round_ in range(10):
            await asyncio.sleep(0.3)  # live publications
            held = [dict(c.client.positions) for c in clients]
            for c in clients:
                await c.client.close()
            await asyncio.sleep(0.2)  # publications the clients miss
            redis_server.kill()
            await asyncio.sleep(0.3)
            redis_server.start()
            await asyncio.sleep(0.3)
            # Each client comes back to the other process, naming what it held.
            clients = [
                await open_resumed(urls[(i + round_ + 1) % 2], held[i]) for i in range(len(clients))
            ]
            connections += clients
            for c in clients:
                assert c.recovered() is persistent, (round_, c.frames[:3])
        await asyncio.sleep(0.3)
        stop.set()
        await publishing
        await publisher.close()
        for c in clients:
            await c.client.close()
    for c in connections:
        assert c.gaps() == [], c.frames
    pushes = sum(1 for c in connections for frame in c.frames if frame[0] == "push")
    assert pushes > 100  # publications did flow between the restarts


@pytest.mark.parametrize("persistent", [True, False], ids=["appendonly", "no persistence"])
async def test_subscribers_connected_through_a_redis_restart_never_skip_silently(
    tmp_path: Path, persistent: bool
) -> None:
    """Connected through the restart: the same epoch goes on, or a new one is announced first."""
    with two_processes(tmp_path, persistent=persistent) as (redis_server, one, two):
        watchers = [await open_resumed(f"ws://127.0.0.1:{port}/room/r", {}) for port in (one, two)]
        async with connect(f"ws://127.0.0.1:{one}/room/p") as publisher:
            before = await publisher.request("burst", {"topic": "rooms/r", "count": 5})
            redis_server.kill()
            await asyncio.sleep(0.5)
            redis_server.start()
            after = None
            for _ in range(50):  # until the processes are back on Redis
                with contextlib.suppress(Exception):
                    after = await publisher.request("burst", {"topic": "rooms/r", "count": 5})
                    break
                await asyncio.sleep(0.2)
            assert after is not None
        for watcher in watchers:
            await until(
                lambda w=watcher: (
                    w.client.positions["rooms/r"]
                    == (  # type: ignore[misc]
                        after["epoch"],
                        after["offset"],
                    )
                )
            )
            await watcher.client.close()
    if persistent:
        assert after["epoch"] == before["epoch"]
        assert after["offset"] == before["offset"] + 5
    else:
        assert after["epoch"] != before["epoch"]
    for watcher in watchers:
        assert watcher.gaps() == [], watcher.frames
        told = [frame for frame in watcher.frames if frame[0] == "subscribed"]
        # Without persistence each subscriber is told, before the new epoch's first push.
        assert [frame[3] for frame in told] == ([None] if persistent else [None, False])


async def test_the_python_client_drops_a_push_it_holds_already_and_names_its_positions() -> None:
    """Against a hand-written server that repeats a push and records the handshake's query."""
    from urllib.parse import parse_qs

    from .conftest import serve

    queries: list[str] = []
    frames = [
        {
            "event": "wsevents.subscribed",
            "data": {"topic": "t", "epoch": "e", "offset": 0, "recovered": None},
        },
        {"event": "said", "data": 1, "topic": "t", "epoch": "e", "offset": 1},
        {"event": "said", "data": 1, "topic": "t", "epoch": "e", "offset": 1},  # again
        {"event": "said", "data": 0, "topic": "t", "epoch": "old", "offset": 9},  # another epoch
        {"event": "said", "data": 2, "topic": "t", "epoch": "e", "offset": 2},
    ]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        queries.append(scope["query_string"].decode())
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "wsevents.json"})
        for frame in frames:
            await send({"type": "websocket.send", "text": json.dumps(frame)})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    with serve(app) as address:
        heard: list[Any] = []
        client = Client(f"ws://{address}/x?user=ann", resume={"t": ("e", 0)}, reconnect=False)
        client.on("said", heard.append)
        async with client:
            await until(lambda: len(heard) == 3)
            await asyncio.sleep(0.1)  # nothing more comes
        assert heard == [1, 0, 2]  # the repeat dropped; another epoch is news
        assert client.duplicates == 1
        assert client.positions == {"t": Position("e", 2)}
    named = parse_qs(queries[0])
    assert named["user"] == ["ann"]
    assert json.loads(named["wsevents-resume"][0]) == {"t": ["e", 0]}
