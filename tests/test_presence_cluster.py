"""Presence across processes: real uvicorn, real redis-server, the Python client."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from wsevents.client import Client

from .conftest import RedisServer, uvicorn_process

pytestmark = pytest.mark.anyio


class View:
    """What one client knows of a topic's members from its ``wsevents.presence`` frames."""

    def __init__(self, client: Client) -> None:
        self.members: dict[str, dict[str, Any]] = {}
        self.twice = 0  # a member listed twice in one frame
        self.left: dict[str, dict[str, Any]] = {}
        client.on("wsevents.presence", self._diff)

    def _diff(self, data: dict[str, Any]) -> None:
        joined, left = data["joined"], data["left"]
        self.twice += len(joined.keys() & left.keys())
        for member, info in left.items():
            self.members.pop(member, None)
            self.left[member] = info
        self.members.update(joined)


async def until(done: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


async def test_members_on_three_processes_agree_and_a_killed_process_s_members_leave(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {"WSEVENTS_BACKPLANE": redis_server.url}
    with contextlib.ExitStack() as stack:
        ports = []
        processes = []
        for n in range(3):
            port, process = stack.enter_context(
                uvicorn_process("tests.apps.presence:app", tmp_path / f"{n}.log", env=env)
            )
            ports.append(port)
            processes.append(process)
        clients: list[Client] = []
        views: list[View] = []
        try:
            for n in range(300):  # 100 members in each process
                client = Client(f"ws://127.0.0.1:{ports[n % 3]}/room/r?user=u{n}", reconnect=False)
                views.append(View(client))
                await client.open()
                clients.append(client)
            everyone = {f"u{n}" for n in range(300)}
            answers = [await clients[n].request("who") for n in range(3)]  # one per process
            for answer in answers:
                assert answer["count"] == 300
                assert {info["user"] for info in answer["members"].values()} == everyone
            assert answers[0]["members"] == answers[1]["members"] == answers[2]["members"]
            # Every client's view, from the frames alone, comes to the same members.
            await until(
                lambda: all(len(view.members) == 300 for view in views), 10, "every view 300"
            )
            assert all(view.members == answers[0]["members"] for view in views)
            # SIGKILL the third process: its 100 members leave within ttl + an interval.
            killed = {f"u{n}" for n in range(2, 300, 3)}
            processes[2].kill()
            processes[2].wait()
            killed_at = time.monotonic()
            alive = [view for n, view in enumerate(views) if n % 3 != 2]
            await until(
                lambda: all(len(view.members) == 200 for view in alive), 8, "the killed ones left"
            )
            took = time.monotonic() - killed_at
            assert took < 2.0 + 0.2 + 1.0  # ttl, an interval, and the clients' own lag
            for view in alive:
                assert {info["user"] for info in view.members.values()} == everyone - killed
                assert {info["user"] for info in view.left.values()} == killed  # with their info
                assert view.twice == 0
            for n in (0, 1):
                answer = await clients[n].request("who")
                assert answer["count"] == 200
                assert {info["user"] for info in answer["members"].values()} == everyone - killed
        finally:
            for client in clients:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 2)


async def test_after_a_minute_of_churn_every_process_lists_exactly_who_is_connected(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    import random

    env = {"WSEVENTS_BACKPLANE": redis_server.url}
    rng = random.Random(16)
    with contextlib.ExitStack() as stack:
        ports = [
            stack.enter_context(
                uvicorn_process("tests.apps.presence:app", tmp_path / f"{n}.log", env=env)
            )[0]
            for n in range(2)
        ]
        observers = [
            Client(f"ws://127.0.0.1:{port}/room/r?user=observer{n}", reconnect=False)
            for n, port in enumerate(ports)
        ]
        views = [View(observer) for observer in observers]
        slots: dict[int, tuple[str, Client]] = {}  # slot: (user, its open client)
        try:
            for observer in observers:
                await observer.open()
            deadline = time.monotonic() + 60
            made = 0
            while time.monotonic() < deadline and made < 5000:  # bounded in time and count
                slot = rng.randrange(200)
                if slot in slots:
                    _, client = slots.pop(slot)
                    await client.close()
                else:
                    made += 1
                    user = f"u{slot}-{made}"
                    client = Client(
                        f"ws://127.0.0.1:{rng.choice(ports)}/room/r?user={user}", reconnect=False
                    )
                    await client.open()
                    slots[slot] = (user, client)
                await asyncio.sleep(rng.random() * 0.02)
            connected = {user for user, _ in slots.values()} | {"observer0", "observer1"}
            assert made > 500  # churn there was
            await until(
                lambda: all(
                    {info["user"] for info in view.members.values()} == connected for view in views
                ),
                5,
                "the observers' views settle on the connected set",
            )
            for view in views:
                assert view.twice == 0
            for observer in observers:
                answer = await observer.request("who")
                assert {info["user"] for info in answer["members"].values()} == connected
                assert answer["count"] == len(connected)
        finally:
            for _, client in slots.values():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 2)
            for observer in observers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(observer.close(), 2)


async def test_after_redis_loses_its_data_the_members_are_registered_again_within_ttl(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    from wsevents import EventError

    env = {"WSEVENTS_BACKPLANE": redis_server.url}
    with uvicorn_process("tests.apps.presence:app", tmp_path / "1.log", env=env) as (port, _):
        clients = [
            Client(f"ws://127.0.0.1:{port}/room/r?user=u{n}", reconnect=False) for n in range(10)
        ]
        try:
            for client in clients:
                await client.open()
            assert (await clients[0].request("who"))["count"] == 10
            redis_server.kill()
            redis_server.start()  # the same port, no persistence: nothing kept
            restarted = time.monotonic()
            count = 0
            while time.monotonic() - restarted < 2.0 + 2.0:  # ttl, and the reconnection
                with contextlib.suppress(EventError):  # Redis away: BackplaneUnavailable
                    count = (await clients[0].request("who"))["count"]
                    if count == 10:
                        break
                await asyncio.sleep(0.1)
            assert count == 10
        finally:
            for client in clients:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 2)
