"""EventTestClient's own behaviour: waiting for one event, keeping the frames before it."""

from __future__ import annotations

import pytest

from wsevents import Channel, Connection, EventApp
from wsevents.testing import EventTestClient, Message


def make_app() -> EventApp:
    feed = Channel("/feed")
    feed.emits("tick", model=int)
    feed.emits("tock", model=int)

    @feed.on("burst", model=int)
    async def burst(conn: Connection, data: int) -> None:
        for n in range(data):
            await conn.send("tick" if n % 2 == 0 else "tock", n)

    @feed.on("ping", reply=str)
    async def ping(conn: Connection) -> str:
        await conn.send("tick", 100)  # before the reply: request() keeps it
        return "pong"

    return EventApp([feed], title="t", version="1")


def test_receive_of_one_event_keeps_the_frames_before_it_in_order() -> None:
    with EventTestClient(make_app()) as client, client.connect("/feed") as ws:
        ws.send("burst", 5)  # tick 0, tock 1, tick 2, tock 3, tick 4
        assert ws.receive(event="tock") == Message("tock", 1)
        assert ws.receive(event="tock") == Message("tock", 3)
        assert [ws.receive() for _ in range(3)] == [
            Message("tick", 0),
            Message("tick", 2),
            Message("tick", 4),
        ]


def test_receive_of_one_event_looks_first_at_the_frames_kept_before() -> None:
    with EventTestClient(make_app()) as client, client.connect("/feed") as ws:
        ws.send("burst", 2)
        assert ws.request("ping") == "pong"  # keeps tick 0, tock 1 and tick 100
        assert ws.receive(event="tick") == Message("tick", 0)
        assert ws.receive(event="tick") == Message("tick", 100)
        assert ws.receive() == Message("tock", 1)


def test_receive_of_an_event_that_never_comes_times_out_and_keeps_what_came() -> None:
    with EventTestClient(make_app()) as client, client.connect("/feed") as ws:
        ws.send("burst", 2)
        with pytest.raises(TimeoutError):
            ws.receive(event="never", timeout=0.3)
        assert [ws.receive(), ws.receive()] == [Message("tick", 0), Message("tock", 1)]
