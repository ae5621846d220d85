"""Presence in one process (DESIGN.md section 11): members, counts and diffs."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from wsevents import Channel, Connection, EventApp, Presence, TopicError
from wsevents.testing import EventTestClient, EventTestSession


def room_app(**rule: Any) -> EventApp:
    chat = Channel("/chat/{room}")

    @chat.on_connect
    async def join(conn: Connection, room: str) -> None:
        await conn.subscribe(f"rooms/{room}", presence={"user": conn.query_params["user"]})

    @chat.on("rename")
    async def rename(conn: Connection, data: str, room: str) -> None:
        await conn.subscribe(f"rooms/{room}", presence={"user": data})

    @chat.on("leave")
    async def leave(conn: Connection, room: str) -> None:
        await conn.unsubscribe(f"rooms/{room}")

    @chat.on("who", reply=dict)
    async def who(conn: Connection, room: str) -> dict[str, Any]:
        members = await conn.app.presence(f"rooms/{room}")
        count = await conn.app.presence_count(f"rooms/{room}")
        return {"me": conn.id, "members": members, "count": count}

    @chat.on("try")
    async def try_(conn: Connection, data: dict[str, Any]) -> None:
        await conn.subscribe(data["topic"], presence=data["presence"])

    rule.setdefault("interval", 0.05)
    return EventApp([chat], title="t", version="1", topics=[Presence("rooms/+", **rule)])


def presence(ws: EventTestSession) -> dict[str, Any]:
    """The next wsevents.presence frame's data, skipping nothing else: none is expected."""
    frame = json.loads(ws.receive_raw())
    assert frame["event"] == "wsevents.presence", frame
    data: dict[str, Any] = frame["data"]
    return data


def users(members: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(info["user"] for info in members.values())


def test_a_new_subscriber_first_hears_every_member_itself_included() -> None:
    with EventTestClient(room_app()) as client, client.connect("/chat/lobby?user=ann") as ann:
        first = presence(ann)
        assert first["topic"] == "rooms/lobby"
        assert users(first["joined"]) == ["ann"]
        assert first["left"] == {}
        with client.connect("/chat/lobby?user=bob") as bob:
            assert users(presence(bob)["joined"]) == ["ann", "bob"]
            assert users(presence(ann)["joined"]) == ["bob"]  # the diff ann hears
            who = bob.request("who")
            assert users(who["members"]) == ["ann", "bob"]
            assert who["count"] == 2
            assert who["members"][who["me"]] == {"user": "bob"}
            time.sleep(0.2)  # four windows: bob's own join does not come again
            bob.request("who")
            with pytest.raises(TimeoutError):
                bob.receive(timeout=0.1)
        gone = presence(ann)
        assert gone["joined"] == {}
        assert list(gone["left"].values()) == [{"user": "bob"}]  # with the info it had
        assert ann.request("who")["count"] == 1


def test_a_connection_that_joins_and_leaves_within_a_window_appears_in_neither() -> None:
    client = EventTestClient(room_app(interval=0.6))
    with client, client.connect("/chat/lobby?user=ann") as ann:
        presence(ann)  # a window just began
        with client.connect("/chat/lobby?user=brief"):
            pass  # in and out within it
        with client.connect("/chat/lobby?user=cy") as cy:
            diff = presence(ann)
            assert users(diff["joined"]) == ["cy"]
            assert diff["left"] == {}
            assert users(presence(cy)["joined"]) == ["ann", "cy"]


def test_subscribing_again_with_other_info_reports_it_in_joined() -> None:
    with EventTestClient(room_app()) as client, client.connect("/chat/lobby?user=ann") as ann:
        presence(ann)
        ann.send("rename", "annie")
        diff = presence(ann)
        assert users(diff["joined"]) == ["annie"]
        assert diff["left"] == {}
        ann.send("leave")  # no member, no subscriber: it hears no more diffs
        who = ann.request("who")
        assert (who["members"], who["count"]) == ({}, 0)
        time.sleep(0.2)
        with pytest.raises(TimeoutError):
            ann.receive(timeout=0.2)


@pytest.mark.parametrize(
    ("attempt", "error"),
    [
        ({"topic": "plain/x", "presence": {"a": 1}}, "matches no Presence rule"),
        ({"topic": "rooms/+", "presence": {"a": 1}}, "only an exact topic"),
    ],
)
def test_presence_where_no_member_can_be_is_a_topic_error(
    attempt: dict[str, Any], error: str
) -> None:
    app = room_app()
    seen: list[BaseException] = []

    @app.exception_handler(TopicError)
    async def record(conn: Connection, exc: BaseException) -> None:
        seen.append(exc)

    with EventTestClient(app) as client, client.connect("/chat/lobby?user=ann") as ann:
        presence(ann)
        ann.send("try", attempt)
        ann.request("who")  # the attempt was handled before this answer
    assert len(seen) == 1
    assert error in str(seen[0])


def test_presence_on_an_app_without_presence_rules_is_a_topic_error() -> None:
    channel = Channel("/c")
    seen: list[BaseException] = []

    @channel.on_connect
    async def join(conn: Connection) -> None:
        try:
            await conn.subscribe("rooms/a", presence={"user": "ann"})
        except TopicError as exc:
            seen.append(exc)

    app = EventApp([channel], title="t", version="1")
    with EventTestClient(app) as client, client.connect("/c"):
        pass
    assert len(seen) == 1
    assert "matches no Presence rule" in str(seen[0])


def test_presence_info_must_be_a_json_object() -> None:
    from wsevents._members import encode_info

    assert encode_info(None) == b"{}"
    assert encode_info({"n": 1}) == b'{"n":1}'
    with pytest.raises(TypeError, match="JSON object"):
        encode_info(["not", "an", "object"])
    with pytest.raises(TypeError, match="JSON-serializable"):
        encode_info({"x": object()})


def test_without_diffs_no_frame_is_sent_and_members_are_still_counted() -> None:
    client = EventTestClient(room_app(diffs=False))
    with (
        client,
        client.connect("/chat/lobby?user=ann") as ann,
        client.connect("/chat/lobby?user=bob"),
    ):
        who = ann.request("who")
        assert who["count"] == 2
        assert users(who["members"]) == ["ann", "bob"]
        time.sleep(0.2)  # four windows
        ann.request("who")
        with pytest.raises(TimeoutError):  # nothing came before or after the answers
            ann.receive(timeout=0.2)


def test_presence_of_a_topic_without_a_rule_is_a_topic_error() -> None:
    app = room_app()

    async def run() -> None:
        await app.startup()
        try:
            with pytest.raises(TopicError, match="no Presence rule"):
                await app.presence("plain/x")
            with pytest.raises(TopicError, match="no Presence rule"):
                await app.presence_count("plain/x")
            assert await app.presence("rooms/empty") == {}
            assert await app.presence_count("rooms/empty") == 0
        finally:
            await app.shutdown()

    asyncio.run(run())


def test_presence_rules_are_checked() -> None:
    for bad in ({"interval": 0}, {"ttl": -1}, {"diffs": "yes"}, {"interval": True}):
        with pytest.raises(ValueError, match="Presence"):
            Presence("rooms/+", **bad)
    with pytest.raises(TopicError):
        Presence("rooms/#/x")


def test_an_app_with_presence_stops_again_after_running_in_another_event_loop() -> None:
    app = room_app()
    # Each test client runs the app in an event loop of its own: a member left in the
    # first (through the task that removes leavers), nobody connects in the second.
    with EventTestClient(app) as client, client.connect("/chat/lobby?user=ann") as ann:
        assert users(presence(ann)["joined"]) == ["ann"]
    with EventTestClient(app) as client:
        assert client.http.get("/asyncapi.json").status_code == 200
