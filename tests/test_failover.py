"""Redis failing over under load: two uvicorn processes on Redis behind Sentinel, and on a
Redis Cluster whose primary of the topic is SIGKILLed.

DESIGN.md section 14: publications go on within seconds of a failover, a
history subscriber never skips silently (it gets every publication, or
``recovered: false``), presence comes back within its ``ttl``, no handler sees
a Redis exception, nothing leaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from wsevents.backplane.cluster import tagged
from wsevents.client import Client

from .conftest import uvicorn_process
from .redis_sets import ClusterSet, SentinelSet
from .test_presence_cluster import View
from .test_resume import Connection, open_resumed, until

pytestmark = pytest.mark.anyio


def pushes(connection: Connection) -> int:
    return sum(1 for frame in connection.frames if frame[0] == "push")


class Deployed:
    """A Sentinel set or a cluster, started, with a way to fail over the node of a topic."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.found = SentinelSet(directory) if kind == "sentinel" else ClusterSet(directory)
        self.found.start()

    def fail_over(self, topic: str) -> None:
        """SIGKILL the master (the primary of ``topic``'s slot); wait for its replacement."""
        if isinstance(self.found, SentinelSet):
            self.found.wait_failover(self.found.kill_master())
        else:
            old = self.found.owner("wsevents:" + tagged(topic))
            self.found.kill(old)
            self.found.wait_promoted(old)


@pytest.fixture(params=["sentinel", "cluster"])
def deployed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployed]:
    found = Deployed(request.param, tmp_path)
    yield found
    found.found.stop()


async def test_a_master_killed_under_load_is_followed_and_nothing_skips_silently(
    deployed: Deployed, tmp_path: Path
) -> None:
    env = {"WSEVENTS_BACKPLANE": deployed.found.url}
    logs = [tmp_path / "1.log", tmp_path / "2.log"]
    with (
        uvicorn_process("tests.apps.history:app", logs[0], env=env) as (one, server),
        uvicorn_process("tests.apps.history:app", logs[1], env=env) as (two, _),
    ):
        urls = [f"ws://127.0.0.1:{port}/room/r" for port in (one, two)]
        watchers = [await open_resumed(url, {}) for url in urls]
        publisher = Client(f"ws://127.0.0.1:{one}/room/p", reconnect=True)
        await publisher.open()
        stop = asyncio.Event()
        refused = 0

        async def publish() -> None:  # a publication every 20 ms, confirmed or refused
            nonlocal refused
            while not stop.is_set():
                try:
                    await publisher.request("burst", {"topic": "rooms/r", "count": 1})
                except Exception:  # unavailable while the master is away: said, not raised
                    refused += 1
                await asyncio.sleep(0.02)

        publishing = asyncio.ensure_future(publish())
        await until(lambda: all(pushes(w) >= 10 for w in watchers))
        files_before = psutil.Process(server.pid).num_fds()
        heard = [pushes(w) for w in watchers]
        killed = time.monotonic()
        deployed.fail_over("rooms/r")
        # Publications go on, on both processes, within 10 s of the kill.
        await until(
            lambda: all(pushes(w) >= h + 10 for w, h in zip(watchers, heard, strict=True)),
            timeout=15,
        )
        went_on = time.monotonic() - killed
        # A history subscriber that reconnects, to the other process, naming its place.
        held = dict(watchers[0].client.positions)
        await watchers[0].client.close()
        await asyncio.sleep(0.2)
        back = await open_resumed(urls[1], held)
        await until(lambda: pushes(back) >= 5)
        stop.set()
        await publishing
        await publisher.close()
        deadline = time.monotonic() + 5
        files_after = psutil.Process(server.pid).num_fds()
        while files_after > files_before + 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            files_after = psutil.Process(server.pid).num_fds()
        for connection in (*watchers[1:], back):
            await connection.client.close()
    assert went_on < 10, f"publications went on {went_on:.1f} s after the master was killed"
    for connection in (*watchers, back):
        assert connection.gaps() == [], connection.frames  # every one, or recovered: false
    # The failover may have lost writes: the history's new epoch is said, never skipped.
    told = [frame for frame in watchers[1].frames if frame[0] == "subscribed"]
    assert [frame[3] for frame in told][-1] is False
    assert files_after <= files_before + 1, "open files leaked across the failover"
    for log in logs:
        text = log.read_text()
        assert "Traceback" not in text, text
        assert "ERROR" not in text, text
    print(f"went on {went_on:.1f} s after the kill; {refused} publications refused meanwhile")


async def test_presence_comes_back_within_its_ttl_after_a_failover(
    deployed: Deployed, tmp_path: Path
) -> None:
    """The new master has none of the members the old one lost: each process sets its own
    again at its next refresh, so every process lists them all within the ttl (2 s)."""
    env = {"WSEVENTS_BACKPLANE": deployed.found.url}
    with contextlib.ExitStack() as stack:
        ports = [
            stack.enter_context(
                uvicorn_process("tests.apps.presence:app", tmp_path / f"{n}.log", env=env)
            )[0]
            for n in range(2)
        ]
        clients: list[Client] = []
        try:
            for n in range(10):
                client = Client(f"ws://127.0.0.1:{ports[n % 2]}/room/r?user=u{n}")
                View(client)
                await client.open()
                clients.append(client)
            everyone = {f"u{n}" for n in range(10)}

            async def listed(client: Client) -> set[str]:
                answer = await client.request("who")
                return {info["user"] for info in answer["members"].values()}

            assert await listed(clients[0]) == await listed(clients[1]) == everyone
            deployed.fail_over("rooms/r")
            served = time.monotonic()
            back = None
            while time.monotonic() - served < 10:
                with contextlib.suppress(Exception):  # unavailable until followed: said
                    if await listed(clients[0]) == await listed(clients[1]) == everyone:
                        back = time.monotonic() - served
                        break
                await asyncio.sleep(0.1)
            assert back is not None, "presence did not come back"
            assert back < 2.0 + 0.2 + 1.5  # the ttl, an interval, the follow of the master
        finally:
            for client in clients:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 2)
    for n in range(2):
        text = (tmp_path / f"{n}.log").read_text()
        assert "Traceback" not in text, text
        assert "ERROR" not in text, text
