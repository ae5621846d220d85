"""Server requests (DESIGN.md section 12): conn.request, answered by the Python client.

A real uvicorn in a thread, the real Python client.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field
from websockets.asyncio.client import connect as websockets_connect
from websockets.exceptions import InvalidStatus

from tests.conftest import RedisServer, serve, uvicorn_process
from tests.relay import Relay
from wsevents import (
    Channel,
    Connection,
    ConnectionGone,
    EventApp,
    EventError,
    Limits,
    PayloadError,
    RequestTimeout,
)
from wsevents.client import connect

pytestmark = pytest.mark.anyio


class Confirm(BaseModel):
    question: str = Field(max_length=100)


class Confirmed(BaseModel):
    yes: bool


class Ask(BaseModel):
    event: str = "confirm"
    question: str = "sure?"
    timeout: float = 5.0
    times: int = 1


def build(limits: Limits | None = None) -> tuple[EventApp, list[Any]]:
    """A channel whose ``ask`` handler asks the client and replies with what became of it."""
    room = Channel("/room")
    room.asks("confirm", model=Confirm, reply=Confirmed, description="Ask to confirm.")
    seen: list[Any] = []

    @room.on("ask", model=Ask, reply=dict)
    async def ask(conn: Connection, data: Ask) -> dict[str, Any]:
        outcomes = []
        for _ in range(data.times):
            try:
                answer = await conn.request(
                    data.event, {"question": data.question}, timeout=data.timeout
                )
            except EventError as exc:
                outcomes.append({"error": exc.code, "details": exc.details})
            except RequestTimeout as exc:
                outcomes.append({"timeout": isinstance(exc, TimeoutError)})
            except ConnectionGone:
                seen.append("gone")
                raise
            else:
                outcomes.append(
                    {"type": type(answer).__name__, "answer": getattr(answer, "yes", answer)}
                )
        return {"outcomes": outcomes}

    @room.on("ask_bad")
    async def ask_bad(conn: Connection) -> None:
        try:
            await conn.request("confirm", {"question": "x" * 200})
        except PayloadError:
            seen.append("payload error")

    @room.on("ask_many", reply=list)
    async def ask_many(conn: Connection) -> list[Any]:
        results = await asyncio.gather(
            *(conn.request("count", n, timeout=5) for n in range(3)), return_exceptions=True
        )
        return [r.code if isinstance(r, EventError) else r for r in results]

    @room.on("hold")
    async def hold(conn: Connection) -> None:
        seen.append(("hold", time.monotonic()))
        await asyncio.sleep(1.5)
        seen.append(("held", time.monotonic()))

    @room.on("note")
    async def note(conn: Connection, data: Any) -> None:
        seen.append(("note", data))

    @room.on_connect
    async def background(conn: Connection) -> None:
        if conn.query_params.get("background"):

            async def later() -> None:
                await asyncio.sleep(0.3)
                answer = await conn.request("count", 41, timeout=5)
                seen.append(("background", answer, time.monotonic()))

            task = asyncio.get_running_loop().create_task(later())
            seen.append(task)

    return EventApp([room], title="t", version="1", limits=limits), seen


async def test_a_handler_awaiting_conn_request_gets_the_answer_validated_by_reply() -> None:
    app, _ = build()
    with serve(app) as address:
        async with connect(f"ws://{address}/room") as client:
            client.answer("confirm", lambda data: {"yes": data["question"] == "sure?"})
            reply = await client.request("ask", {})
    assert reply == {"outcomes": [{"type": "Confirmed", "answer": True}]}
    assert app.stats()["requests"] == {"answered": 1}


async def test_each_outcome_of_conn_request_reaches_the_handler() -> None:
    app, seen = build()
    with serve(app) as address:
        async with connect(f"ws://{address}/room", codec="msgpack") as client:

            @client.answer("confirm")
            async def refuse(data: dict[str, Any]) -> None:
                raise EventError("declined", "not now", {"why": "busy"})

            assert await client.request("ask", {}) == {
                "outcomes": [{"error": "declined", "details": {"why": "busy"}}]
            }
            client.answer("confirm", lambda data: {"yes": "maybe"})  # fails Confirmed
            outcome = (await client.request("ask", {}))["outcomes"][0]
            assert outcome["error"] == "validation_error"
            assert outcome["details"][0]["loc"] == ["yes"]
            # No answerer for the event: the client answers unknown_event.
            assert await client.request("ask", {"event": "other"}) == {
                "outcomes": [{"error": "unknown_event", "details": None}]
            }
            client.answer("confirm", lambda data: 1 / 0)  # a bug: internal_error
            assert await client.request("ask", {}) == {
                "outcomes": [{"error": "internal_error", "details": None}]
            }
            await client.send("ask_bad")
            assert await client.request("ask", {"times": 0}) == {"outcomes": []}
    assert "payload error" in seen
    assert app.stats()["requests"] == {"error": 3, "invalid": 1}


async def test_no_answer_in_time_raises_request_timeout_and_a_late_answer_is_dropped() -> None:
    app, _ = build()
    with serve(app) as address:
        async with connect(f"ws://{address}/room") as client:
            release = asyncio.Event()

            @client.answer("confirm")
            async def slow(data: Any) -> dict[str, bool]:
                await release.wait()
                return {"yes": True}

            reply = await client.request("ask", {"timeout": 0.2})
            assert reply == {"outcomes": [{"timeout": True}]}
            release.set()  # the answer goes out now, to a request that gave up
            await asyncio.sleep(0.2)
            client.answer("confirm", lambda data: {"yes": False})
            # The connection is fine, and nothing came back for the late answer.
            assert await client.request("ask", {}) == {
                "outcomes": [{"type": "Confirmed", "answer": False}]
            }
    stats = app.stats()
    assert stats["requests"] == {"answered": 1, "timeout": 1}
    assert stats["answers_dropped"] == 1
    assert stats["errors"] == {}


async def test_a_connection_that_closes_first_raises_connection_gone_at_once() -> None:
    app, seen = build()
    with serve(app) as address:
        client = connect(f"ws://{address}/room", reconnect=False)
        await client.open()
        client.answer("confirm", lambda data: asyncio.sleep(30))
        await client.send("ask", {"timeout": 30})
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await client.close()
        for _ in range(500):  # at most 5 s
            if "gone" in seen:
                break
            await asyncio.sleep(0.01)
        assert time.monotonic() - started < 2  # not the request's 30 s
    assert "gone" in seen
    assert app.stats()["requests"] == {"gone": 1}


async def test_answers_are_read_while_a_handler_runs_and_other_frames_wait_in_order() -> None:
    app, seen = build()
    with serve(app) as address:
        async with connect(f"ws://{address}/room?background=1") as client:
            client.answer("count", lambda n: n + 1)
            await client.send("hold")
            for n in range(3):
                await client.send("note", n)
            await asyncio.sleep(2.0)
    events = [entry for entry in seen if isinstance(entry, tuple)]
    names = [entry[0] for entry in events]
    # The notes waited for the handler before them, in order.
    assert names == ["hold", "background", "held", "note", "note", "note"]
    assert [entry[1] for entry in events[3:]] == [0, 1, 2]
    background = events[1]
    assert background[1] == 42
    assert events[0][1] < background[2] < events[2][1]  # answered while the handler ran


async def test_awaited_answers_do_not_count_against_the_rate() -> None:
    app, _ = build(Limits(rate=1.0, burst=1))
    with serve(app) as address:
        async with connect(f"ws://{address}/room") as client:
            client.answer("confirm", lambda data: {"yes": True})
            reply = await client.request("ask", {"times": 5})
    assert reply["outcomes"] == [{"type": "Confirmed", "answer": True}] * 5
    assert app.stats()["rate_limited"] == 0


async def test_requests_beyond_max_requests_raise_rate_limited() -> None:
    app, _ = build(Limits(max_requests=2))
    with serve(app) as address:
        async with connect(f"ws://{address}/room") as client:

            @client.answer("count")
            async def count(n: int) -> int:
                await asyncio.sleep(0.2)
                return n

            assert await client.request("ask_many") == [0, 1, "rate_limited"]
    assert app.stats()["requests"] == {"answered": 2, "refused": 1}


async def test_a_client_that_overfills_the_receive_queue_is_closed_with_1008() -> None:
    app, _ = build(Limits(receive_queue=3, rate=None))
    with serve(app) as address:
        client = connect(f"ws://{address}/room", reconnect=False)
        await client.open()
        try:
            await client.send("hold")
            for n in range(5):
                await client.send("note", n)
            with pytest.raises(ConnectionError, match="1008"):
                async for _ in client:
                    pass
        finally:
            await client.close()
    assert app.stats()["closed_by_server"] == {1008: 1}


# -- across processes: EventApp.request and request_all ---------------------------------


_prefixes = itertools.count()


@pytest.fixture(params=["redis", "cluster"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """One Redis, or the Redis Cluster the module shares (its own prefix per test)."""
    if request.param == "cluster":
        yield request.getfixturevalue("redis_cluster").url + f"?prefix=rq{next(_prefixes)}:"
        return
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server.url
    finally:
        server.kill()


async def test_request_and_request_all_reach_connections_in_another_process(
    shared_url: str, tmp_path: Path
) -> None:
    env = {"WSEVENTS_BACKPLANE": shared_url}
    with (
        uvicorn_process("tests.apps.requests:app", tmp_path / "1.log", env=env) as (p1, _),
        uvicorn_process("tests.apps.requests:app", tmp_path / "2.log", env=env) as (p2, _),
    ):
        one, two = f"ws://127.0.0.1:{p1}/node", f"ws://127.0.0.1:{p2}/node"
        async with (
            connect(f"{one}?sub=room") as ann,
            connect(f"{two}?sub=room&sub=%2B") as bob,  # two subscriptions match: asked once
            connect(f"{two}?sub=room") as cat,
            connect(f"{two}?sub=other") as dan,
        ):
            ann.answer("confirm", lambda data: {"yes": True})
            bob.answer("confirm", lambda data: {"yes": data["question"] == "sure?"})

            @cat.answer("confirm")
            async def slow(data: Any) -> dict[str, bool]:
                await asyncio.sleep(5)
                return {"yes": True}

            dan.answer("confirm", lambda data: {"yes": "not a bool"})
            ids = {
                name: await client.request("whoami")
                for name, client in (("ann", ann), ("bob", bob), ("cat", cat), ("dan", dan))
            }
            asked = await ann.request("ask_one", {"id": ids["bob"]})
            assert asked["ok"] == {"yes": True}
            invalid = await ann.request("ask_one", {"id": ids["dan"]})
            assert invalid["error"] == "validation_error"
            late = await ann.request("ask_one", {"id": ids["cat"], "timeout": 0.5})
            assert late["timeout"] is True
            assert 0.45 <= late["seconds"] < 3  # its timeout, not the default
            # A process that is not there: gone at once, not at the timeout.
            dead = await ann.request("ask_one", {"id": "deadbeef-0123", "timeout": 5})
            assert dead["gone"] is True
            assert dead["seconds"] < 2.5  # at once, not at the 5 s timeout
            everyone = await ann.request("ask_all", {"topic": "room", "timeout": 1.0})
            assert everyone["outcomes"] == {
                ids["ann"]: {"ok": {"yes": True}},
                ids["bob"]: {"ok": {"yes": False}},
                ids["cat"]: {"timeout": True},
            }
            assert 0.95 <= everyone["seconds"] < 2  # at its timeout (1 s), not later
            await cat.close()
            gone = await ann.request("ask_one", {"id": ids["cat"], "timeout": 5})
            assert gone["gone"] is True
            assert gone["seconds"] < 2.5  # at once, not at the 5 s timeout
            quick = await bob.request("ask_all", {"topic": "room", "timeout": 5.0})
            assert quick["outcomes"] == {
                ids["ann"]: {"ok": {"yes": True}},
                ids["bob"]: {"ok": {"yes": False}},
            }
            assert quick["seconds"] < 2.5  # all answered: it does not wait for the 5 s timeout


async def test_request_of_a_connection_whose_process_died_is_gone_at_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {"WSEVENTS_BACKPLANE": redis_server.url}
    with uvicorn_process("tests.apps.requests:app", tmp_path / "1.log", env=env) as (p1, _):
        async with connect(f"ws://127.0.0.1:{p1}/node") as ann:
            with uvicorn_process("tests.apps.requests:app", tmp_path / "2.log", env=env) as (
                p2,
                process,
            ):
                bob = connect(f"ws://127.0.0.1:{p2}/node", reconnect=False)
                await bob.open()
                bob_id = await bob.request("whoami")
                process.kill()
                process.wait()
            asked = await ann.request("ask_one", {"id": bob_id, "timeout": 5})
            await bob.close()
    assert asked["gone"] is True
    assert asked["seconds"] < 2.5  # at once, not at the 5 s timeout


# -- a client's request across a dropped connection, and once handlers --------------------


def once_app() -> tuple[EventApp, list[int]]:
    room = Channel("/room")
    runs: list[int] = []

    @room.on("charge", reply=dict, once=True)
    async def charge(data: dict[str, Any]) -> dict[str, Any]:
        runs.append(data["amount"])
        await asyncio.sleep(data.get("seconds", 0.0))
        return {"amount": data["amount"], "run": len(runs)}

    @room.on("count", reply=dict)
    async def count(data: dict[str, Any]) -> dict[str, Any]:
        runs.append(data["amount"])
        await asyncio.sleep(data.get("seconds", 0.0))
        return {"amount": data["amount"], "run": len(runs)}

    return EventApp([room], title="t", version="1"), runs


@pytest.mark.parametrize("once", [True, False])
async def test_a_request_is_answered_though_every_connection_was_cut_mid_request(
    once: bool,
) -> None:
    app, runs = once_app()
    event = "charge" if once else "count"
    with serve(app) as address:
        port = int(address.rsplit(":", 1)[1])
        async with Relay(port) as relay:
            client = connect(f"ws://127.0.0.1:{relay.port}/room", backoff=(0.05, 0.1))
            await client.open()
            try:
                asked = asyncio.ensure_future(
                    client.request(event, {"amount": 7, "seconds": 0.5}, timeout=10)
                )
                await asyncio.sleep(0.2)  # the handler runs
                relay.cut()
                reply = await asked
            finally:
                await client.close()
    assert reply["amount"] == 7
    assert client.reconnects == 1
    assert relay.connections == 2
    if once:  # the resend waited for the first run's answer
        assert (runs, reply["run"]) == ([7], 1)
    else:  # at least once: the resend ran it again
        assert runs == [7, 7]


async def test_a_once_request_sent_again_gets_the_kept_answer_without_running() -> None:
    app, runs = once_app()
    with serve(app) as address:
        url = f"ws://{address}/room?wsevents-session=s-{'a' * 20}"
        async with websockets_connect(url) as ws:
            frame = {"event": "charge", "data": {"amount": 3}, "id": 1}
            await ws.send(json.dumps(frame))
            first = json.loads(await ws.recv())
            await ws.send(json.dumps(frame))
            again = json.loads(await ws.recv())
            await ws.send(json.dumps({**frame, "id": "1"}))  # another id: another request
            other = json.loads(await ws.recv())
        async with websockets_connect(f"ws://{address}/room") as ws:  # no session: runs
            await ws.send(json.dumps(frame))
            unkeyed = json.loads(await ws.recv())
    assert first == again == {"event": "charge", "data": {"amount": 3, "run": 1}, "id": 1}
    assert other["data"] == {"amount": 3, "run": 2}
    assert unkeyed["data"] == {"amount": 3, "run": 3}
    assert runs == [3, 3, 3]


async def test_a_malformed_session_refuses_the_handshake_with_400() -> None:
    app, _ = once_app()
    with serve(app) as address, pytest.raises(InvalidStatus) as refused:
        async with websockets_connect(f"ws://{address}/room?wsevents-session=short"):
            pass
    assert refused.value.response.status_code == 400


async def frame_of(url: str, frame: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
    """Send one frame on a new connection and return the first frame that answers it."""
    async with websockets_connect(url) as ws:
        await ws.send(json.dumps(frame))
        answer: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        return answer


async def test_a_once_request_runs_once_across_two_processes_while_it_runs_and_after(
    shared_url: str, tmp_path: Path
) -> None:
    env = {"WSEVENTS_BACKPLANE": shared_url}
    session = "wsevents-session=" + "b" * 24
    with (
        uvicorn_process("tests.apps.requests:app", tmp_path / "1.log", env=env) as (p1, _),
        uvicorn_process("tests.apps.requests:app", tmp_path / "2.log", env=env) as (p2, _),
    ):
        one, two = f"ws://127.0.0.1:{p1}/node?{session}", f"ws://127.0.0.1:{p2}/node?{session}"
        frame = {"event": "charge", "data": {"amount": 5, "seconds": 1.0}, "id": "pay-1"}
        first = asyncio.ensure_future(frame_of(one, frame))
        await asyncio.sleep(0.3)  # running in process one: the resend to two waits for it
        while_running = await frame_of(two, frame)
        after = await frame_of(two, frame)
        declined = {"event": "charge", "data": {"amount": -1}, "id": "pay-2"}
        errors = [await frame_of(url, declined) for url in (one, two)]
        async with websockets_connect(f"ws://127.0.0.1:{p1}/node") as ws:
            await ws.send(json.dumps({"event": "runs", "id": 1}))
            runs_one = json.loads(await ws.recv())["data"]
        async with websockets_connect(f"ws://127.0.0.1:{p2}/node") as ws:
            await ws.send(json.dumps({"event": "runs", "id": 1}))
            runs_two = json.loads(await ws.recv())["data"]
    answer = await first
    assert answer["data"]["amount"] == 5
    assert while_running == after == answer
    assert errors[0] == errors[1]
    assert errors[0]["data"]["code"] == "declined"
    assert errors[0]["id"] == "pay-2"
    assert sorted(runs_one + runs_two) == ["charge -1", "charge 5"]


async def test_a_once_request_whose_process_was_killed_runs_again_after_the_lease(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {"WSEVENTS_BACKPLANE": f"{redis_server.url}?once_lease=1"}
    session = "wsevents-session=" + "c" * 24
    frame = {"event": "charge", "data": {"amount": 9, "seconds": 0.3}, "id": 1}
    with uvicorn_process("tests.apps.requests:app", tmp_path / "2.log", env=env) as (p2, _):
        with uvicorn_process("tests.apps.requests:app", tmp_path / "1.log", env=env) as (
            p1,
            process,
        ):
            slow = {**frame, "data": {"amount": 9, "seconds": 30}}
            async with websockets_connect(f"ws://127.0.0.1:{p1}/node?{session}") as ws:
                await ws.send(json.dumps(slow))
                await asyncio.sleep(0.3)  # the handler runs in process one
                process.kill()
                process.wait()
        started = time.monotonic()
        answer = await frame_of(f"ws://127.0.0.1:{p2}/node?{session}", frame)
        waited = time.monotonic() - started
        again = await frame_of(f"ws://127.0.0.1:{p2}/node?{session}", frame)
    assert answer["data"]["runs_here"] == 1  # run once in process two
    assert again == answer
    assert 0.3 < waited < 5  # the lease (1 s) lapsed first


async def test_a_once_request_gets_unavailable_when_redis_is_down_and_does_not_run(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {"WSEVENTS_BACKPLANE": redis_server.url}
    session = "wsevents-session=" + "d" * 24
    with uvicorn_process("tests.apps.requests:app", tmp_path / "1.log", env=env) as (p1, _):
        url = f"ws://127.0.0.1:{p1}/node?{session}"
        redis_server.kill()
        refused = await frame_of(url, {"event": "charge", "data": {"amount": 1}, "id": 1})
        async with websockets_connect(f"ws://127.0.0.1:{p1}/node") as ws:
            await ws.send(json.dumps({"event": "runs", "id": 2}))
            runs = json.loads(await ws.recv())["data"]
    assert refused["event"] == "error"
    assert refused["data"]["code"] == "unavailable"
    assert refused["id"] == 1
    assert runs == []


async def test_a_connection_whose_reading_passed_on_ends_when_the_client_leaves() -> None:
    """A handler that waits hands the reading to a task that then reads the client's leaving.

    The connection's own task, waiting for that task to end, must let the
    loop run: on 3.12+ gathering tasks that ended does not yield, and a wait
    that gathered them again and again held the server's loop for good.
    """
    channel = Channel("/c")

    @channel.on("slow", reply=int)
    def slow() -> int:  # a sync handler runs in a thread: its task waits
        time.sleep(0.01)
        return 1

    app = EventApp([channel])
    with serve(app) as address:
        for _ in range(3):  # each connection's reading passes on once, then it ends
            async with websockets_connect(f"ws://{address}/c", close_timeout=5) as ws:
                await ws.send(json.dumps({"event": "slow", "id": 1}))
                reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert reply == {"event": "slow", "data": 1, "id": 1}
        await asyncio.sleep(0.1)
        async with websockets_connect(f"ws://{address}/c", open_timeout=5) as ws:
            await ws.send(json.dumps({"event": "slow", "id": 2}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["id"] == 2
    assert app.stats()["connections_total"] == 4


def test_a_malformed_answer_is_an_error_the_handler_can_tell_apart() -> None:
    """An error answer without a code is ``bad_frame``; an answer under another event is not one."""
    from wsevents.testing import EventTestClient

    app, _ = build()
    with EventTestClient(app) as client, client.connect("/room") as ws:
        outcomes = []
        for answer in (
            {"event": "error", "data": {"message": "no code"}},
            {"event": "other", "data": {"yes": True}},
            {"event": "confirm", "data": {"yes": True}},
        ):
            ws.send("ask", {}, id=1)
            asked = ws.receive()
            ws.send_raw(json.dumps({**answer, "ask": asked.ask}))
            outcomes.append(ws.receive().data["outcomes"][0])
    assert outcomes == [
        {"error": "bad_frame", "details": {"message": "no code"}},
        {"error": "bad_envelope", "details": None},
        {"type": "Confirmed", "answer": True},
    ]
    assert app.stats()["requests"] == {"error": 1, "invalid": 1, "answered": 1}
