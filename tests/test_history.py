"""Resumable topics in one process (DESIGN.md section 10): positions, replay, recovery."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import BaseModel

from wsevents import (
    BackplaneUnavailable,
    Channel,
    Connection,
    EventApp,
    History,
    Limits,
    Position,
    Publication,
    RegistrationError,
    Reject,
    TopicError,
)
from wsevents.testing import EventTestClient, EventTestSession


class Say(BaseModel):
    text: str


class At(BaseModel):
    """The position a publish returned, or nulls."""

    epoch: str | None = None
    offset: int | None = None


def chat_app(size: int = 10, **limits: Any) -> EventApp:
    chat = Channel("/chat/{room}")

    @chat.on_connect
    async def join(conn: Connection, room: str) -> None:
        if room != "quiet":
            await conn.subscribe(f"rooms/{room}")

    @chat.on("say", model=Say, reply=At)
    async def say(conn: Connection, data: Say, room: str) -> At:
        position = await conn.publish(f"rooms/{room}", "said", {"text": data.text})
        return At() if position is None else At(epoch=position.epoch, offset=position.offset)

    @chat.on("plain", model=Say, reply=At)
    async def plain(conn: Connection, data: Say) -> At:
        assert await conn.publish("plain/x", "said", {"text": data.text}) is None
        return At()

    @chat.on("watch")
    async def watch(conn: Connection, data: str) -> None:
        await conn.subscribe(data)

    return EventApp(
        [chat],
        title="t",
        version="1",
        topics=[History("rooms/+", size=size)],
        limits=Limits(**limits) if limits else None,
    )


def frame(ws: EventTestSession) -> dict[str, Any]:
    """The next frame, position keys included."""
    decoded: dict[str, Any] = json.loads(ws.receive_raw())
    return decoded


def resume(positions: dict[str, Position]) -> str:
    held = {topic: [epoch, offset] for topic, (epoch, offset) in positions.items()}
    return "wsevents-resume=" + quote(json.dumps(held))


def test_a_subscription_to_a_history_topic_is_answered_with_its_position() -> None:
    with EventTestClient(chat_app()) as client, client.connect("/chat/lobby") as ws:
        subscribed = frame(ws)
        assert subscribed["event"] == "wsevents.subscribed"
        data = subscribed["data"]
        assert data["topic"] == "rooms/lobby"
        assert data["offset"] == 0
        assert data["recovered"] is None  # no position named
        assert isinstance(data["epoch"], str)
        assert data["epoch"]


def test_a_push_through_a_history_topic_carries_its_position_and_publish_returns_it() -> None:
    with EventTestClient(chat_app()) as client, client.connect("/chat/lobby") as ws:
        epoch = frame(ws)["data"]["epoch"]
        ws.send("say", {"text": "one"}, id="r1")
        assert frame(ws) == {
            "event": "said",
            "data": {"text": "one"},
            "topic": "rooms/lobby",
            "epoch": epoch,
            "offset": 1,
        }
        assert frame(ws)["data"] == {"epoch": epoch, "offset": 1}  # what publish returned
        # A topic without a History rule: no position, publish returns None.
        ws.send("watch", "plain/x")
        ws.send("plain", {"text": "p"}, id="r2")
        assert frame(ws) == {"event": "said", "data": {"text": "p"}}
        assert frame(ws) == {"event": "plain", "data": {"epoch": None, "offset": None}, "id": "r2"}


def test_a_resumed_connection_gets_what_it_missed_then_subscribed_then_live() -> None:
    app = chat_app()
    with EventTestClient(app) as client:
        with client.connect("/chat/lobby") as ws:
            epoch = frame(ws)["data"]["epoch"]
            for text in ("a", "b", "c"):
                ws.send("say", {"text": text})
            assert [frame(ws)["offset"] for _ in range(3)] == [1, 2, 3]
        query = resume({"rooms/lobby": Position(epoch, 1)})
        with client.connect(f"/chat/lobby?{query}") as ws:
            replayed = [frame(ws) for _ in range(2)]
            assert [(f["data"]["text"], f["offset"]) for f in replayed] == [("b", 2), ("c", 3)]
            assert frame(ws)["data"] == {
                "topic": "rooms/lobby",
                "epoch": epoch,
                "offset": 3,
                "recovered": True,
            }
            ws.send("say", {"text": "d"})
            assert frame(ws)["offset"] == 4  # live, after the replay, none twice


def test_a_position_equal_to_the_topics_recovers_with_nothing_replayed() -> None:
    with EventTestClient(chat_app()) as client:
        with client.connect("/chat/lobby") as ws:
            epoch = frame(ws)["data"]["epoch"]
            ws.send("say", {"text": "a"})
            assert frame(ws)["offset"] == 1
        with client.connect(f"/chat/lobby?{resume({'rooms/lobby': Position(epoch, 1)})}") as ws:
            first = frame(ws)  # no replay before it
            assert first["event"] == "wsevents.subscribed"
            assert first["data"]["recovered"] is True
            assert first["data"]["offset"] == 1
            ws.send("say", {"text": "b"})
            assert frame(ws)["offset"] == 2


@pytest.mark.parametrize(
    ("held", "why"),
    [
        (lambda epoch: Position("another-epoch", 1), "another epoch"),
        (lambda epoch: Position(epoch, 9), "a position ahead of the topic"),
        (lambda epoch: Position(epoch, 0), "trimmed: 12 publications, 10 kept"),
    ],
)
def test_a_position_the_history_cannot_serve_recovers_nothing(held: Any, why: str) -> None:
    with EventTestClient(chat_app(size=10)) as client:
        with client.connect("/chat/lobby") as ws:
            epoch = frame(ws)["data"]["epoch"]
            count = 12 if "trimmed" in why else 3
            for n in range(count):
                ws.send("say", {"text": str(n)})
            assert [frame(ws)["offset"] for _ in range(count)] == list(range(1, count + 1))
        with client.connect(f"/chat/lobby?{resume({'rooms/lobby': held(epoch)})}") as ws:
            first = frame(ws)
            assert first["event"] == "wsevents.subscribed", why
            assert first["data"]["recovered"] is False, why
            assert first["data"]["offset"] == count


@pytest.mark.parametrize(
    "raw",
    [
        "not-json",
        quote("[1, 2]"),
        quote('{"rooms/a": ["e"]}'),
        quote('{"rooms/a": ["e", -1]}'),
        quote('{"rooms/a": [1, 2]}'),
        quote('{"rooms/a": ["e", 1.5]}'),
        quote('{"rooms/a": ["e", true]}'),
    ],
)
def test_a_malformed_resume_parameter_refuses_the_handshake_with_400(raw: str) -> None:
    with EventTestClient(chat_app()) as client:
        with pytest.raises(Reject) as refused, client.connect(f"/chat/lobby?wsevents-resume={raw}"):
            pass
        assert refused.value.status == 400
        assert "wsevents-resume" in refused.value.reason


def test_positions_for_topics_never_subscribed_are_ignored() -> None:
    query = resume({"rooms/elsewhere": Position("x", 3)})
    with EventTestClient(chat_app()) as client, client.connect(f"/chat/lobby?{query}") as ws:
        assert frame(ws)["data"]["recovered"] is None


def test_a_replay_does_not_count_against_the_send_queue() -> None:
    app = chat_app(size=50, send_queue=4)
    with EventTestClient(app) as client:
        with client.connect("/chat/quiet") as ws:  # subscribes to nothing on connect
            for n in range(31):
                ws.send("say", {"text": str(n)})
            epoch = ws.request("say", {"text": "last"})["epoch"]
        query = resume({"rooms/quiet": Position(epoch, 0)})
        with client.connect(f"/chat/quiet?{query}") as ws:
            ws.send("watch", "rooms/quiet")
            replayed = [frame(ws) for _ in range(32)]  # 32 frames through a queue of 4
            assert [f["offset"] for f in replayed] == list(range(1, 33))
            assert frame(ws)["data"]["recovered"] is True


def test_history_pages_forward_from_a_position() -> None:
    app = chat_app()

    async def run() -> None:
        await app.startup()
        try:
            positions = [await app.publish("rooms/a", "said", {"n": n}) for n in range(5)]
            assert [p.offset for p in positions if p is not None] == [1, 2, 3, 4, 5]
            first = await app.history("rooms/a", limit=2)
            assert first == [
                Publication("said", {"n": 0}, "rooms/a", positions[0].epoch, 1),  # type: ignore[union-attr]
                Publication("said", {"n": 1}, "rooms/a", positions[0].epoch, 2),  # type: ignore[union-attr]
            ]
            last = first[-1]
            rest = await app.history("rooms/a", since=Position(last.epoch, last.offset))
            assert [p.offset for p in rest] == [3, 4, 5]
            other_epoch = await app.history("rooms/a", since=Position("old", 4), limit=1)
            assert [p.offset for p in other_epoch] == [1]
            with pytest.raises(TopicError):
                await app.history("plain/x")
            assert await app.publish("plain/x", "e", 1) is None
        finally:
            await app.shutdown()

    asyncio.run(run())


def test_history_rules_are_checked() -> None:
    with pytest.raises(ValueError, match="size must be a positive integer"):
        History("rooms/+", size=0)
    with pytest.raises(ValueError, match="ttl must be a positive number"):
        History("rooms/+", ttl=0)
    with pytest.raises(TopicError):
        History("rooms/#/x")
    with pytest.raises(RegistrationError):
        EventApp([], title="t", version="1", topics=["rooms/+"])  # type: ignore[list-item]


def test_events_starting_with_wsevents_dot_are_reserved() -> None:
    channel = Channel("/x")
    with pytest.raises(RegistrationError, match="reserved"):

        @channel.on("wsevents.subscribed")
        async def handler() -> None: ...

    with pytest.raises(RegistrationError, match="reserved"):
        channel.emits("wsevents.mine")


def test_a_publish_the_backplane_cannot_keep_raises_and_reaches_nobody() -> None:
    from wsevents.backplane import MemoryBackplane

    class Unreachable(MemoryBackplane):
        waits = True  # a transport's backplane, gone

        async def append(self, *args: Any, **kwargs: Any) -> Position:
            raise ConnectionError("down")

    app = EventApp(
        [Channel("/x")],
        title="t",
        version="1",
        backplane=Unreachable(),
        topics=[History("kept/#", publish_timeout=0.3)],
    )

    async def run() -> None:
        await app.startup()
        try:
            with pytest.raises(BackplaneUnavailable, match=r"within 0\.3 s"):
                await app.publish("kept/a", "e", 1)
            assert await app.publish("other", "e", 1) is None  # other topics: as before
        finally:
            await app.shutdown()

    asyncio.run(run())


class _GatedReads:
    """A process's Streams over an in-process history whose reads wait for ``gate``."""

    def __init__(self) -> None:
        from wsevents._streams import Streams
        from wsevents.backplane import MemoryBackplane

        gate = self.gate = asyncio.Event()
        self.reads = 0

        class Gated(MemoryBackplane):
            waits = True  # a transport's backplane: a read takes a while

            async def read(self, topic: str, **kwargs: Any) -> Any:
                reads.reads += 1
                await gate.wait()
                return await super().read(topic, **kwargs)

        reads = self
        self.backplane = Gated()
        self.delivered: list[int] = []
        self.streams = Streams(
            self.backplane,
            (History("t"),),
            lambda topic, steps: self.delivered.extend(
                position.offset for position, message in steps if message is not None
            ),
            lambda payload: {"d": payload},
        )

    async def publish(self, count: int) -> list[Position]:
        await self.backplane.start(lambda *args: None)
        return [
            await self.backplane.append("t", b"%d" % n, key=f"k{n}", size=100, ttl=60)
            for n in range(1, count + 1)
        ]

    def arrive(self, position: Position) -> None:
        self.streams.arrived("t", position, {"d": b"%d" % position.offset}, True)

    async def until_delivered(self, count: int) -> list[int]:
        for _ in range(200):
            if len(self.delivered) >= count:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # nothing more comes
        return self.delivered


def test_a_gap_closed_while_it_is_read_skips_nothing_that_waits_after_it() -> None:
    async def run() -> list[int]:
        gated = _GatedReads()
        p = await gated.publish(5)
        gated.arrive(p[0])
        gated.arrive(p[2])  # 2 is missing: its gap is read
        gated.arrive(p[4])
        await asyncio.sleep(0.01)
        assert gated.reads == 1
        gated.arrive(p[1])  # its publish was confirmed late: 2 and 3 go out at once
        gated.gate.set()  # the read answers with 2 alone, which is no longer missing
        delivered = await gated.until_delivered(5)
        await gated.streams.stop()
        return delivered

    assert asyncio.run(run()) == [1, 2, 3, 4, 5]  # 4 read from the history, not skipped


def test_a_gap_closed_while_it_is_read_leaves_the_stream_delivering(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run() -> list[int]:
        gated = _GatedReads()
        p = await gated.publish(4)
        gated.arrive(p[0])
        gated.arrive(p[2])
        await asyncio.sleep(0.01)
        gated.arrive(p[1])  # nothing waits any more when the read answers
        gated.gate.set()
        await gated.until_delivered(3)
        gated.arrive(p[3])
        delivered = await gated.until_delivered(4)
        await gated.streams.stop()
        return delivered

    assert asyncio.run(run()) == [1, 2, 3, 4]
    assert "a history task failed" not in caplog.text


def test_a_burst_of_kept_publications_lets_the_others_run_as_a_plain_burst_does() -> None:
    """A handler publishing 20 times to 70 subscribers, in one process: each publish to as
    many lets the others run once (their sends, and on 3.10 and 3.11 the fan-out itself,
    which starts in the loop's next turn). A kept publication did not, so in one process
    a burst with history reached its subscribers only once it was over (p50 76 ms
    against 8 ms without history, `bench/run.py --only "history: fan-out to 1000"`)."""
    room = Channel("/room")

    @room.on_connect
    async def join(conn: Connection) -> None:
        await conn.subscribe("rooms/kept")
        await conn.subscribe("plain/x")

    @room.on("burst", reply=int)
    async def burst(conn: Connection, data: str) -> int:
        turns = 0

        async def count() -> None:
            nonlocal turns
            while True:
                await asyncio.sleep(0)
                turns += 1

        counting = asyncio.get_running_loop().create_task(count())
        await asyncio.sleep(0)  # it has started
        started = turns
        for n in range(20):
            await conn.publish(data, "tick", n)
        counting.cancel()
        return turns - started

    app = EventApp(
        [room], title="t", version="1", topics=[History("rooms/+")], limits=Limits(rate=None)
    )
    with EventTestClient(app) as client, contextlib.ExitStack() as stack:
        sessions = [stack.enter_context(client.connect("/room")) for _ in range(70)]
        assert sessions[0].request("burst", "plain/x") >= 20  # as before
        assert sessions[0].request("burst", "rooms/kept") >= 20
