"""The one owner of subscriptions, on its own: one record per topic and subscriber."""

from __future__ import annotations

from collections.abc import Mapping

from wsevents._history import Position
from wsevents._subscriptions import Declared, Subscriptions
from wsevents.codecs import Codec, JSONCodec


class FakeSubscriber:
    """What the topics part needs of a subscriber, and nothing of the runtime."""

    def __init__(self, connection_id: str) -> None:
        self.id = connection_id
        self.codec: Codec = JSONCodec()
        self.emitted: Mapping[str, Declared] = {}
        self.frames: list[str | bytes] = []

    def push(self, frame: str | bytes) -> bool:
        self.frames.append(frame)
        return False

    def push_replay(self, frame: str | bytes) -> None:
        self.frames.append(frame)

    def resume_position(self, topic: str) -> Position | None:
        return None


def test_a_record_per_topic_and_subscriber_and_the_table_beside_it_agree() -> None:
    table = Subscriptions()
    a, b = FakeSubscriber("a"), FakeSubscriber("b")
    room, first = table.add(a, "rooms/1")
    assert first
    assert not table.add(b, "rooms/1")[1]
    pattern, first = table.add(a, "rooms/+")
    assert first
    assert table.get(a, "rooms/1") is room
    system, _ = table.add(a, "$user/0123")  # the runtime's, for a connection's user
    assert table.topics_of(a) == {"rooms/1", "rooms/+"}
    assert table.count(a) == 2  # the system's topic is not the subscriber's own
    assert table.members("$user/0123") == {a}
    table.remove(system)
    assert table.members("rooms/1") == {a, b}  # a once, though two subscriptions match
    assert [record.subscriber for record in table.exact("rooms/1")] in ([a, b], [b, a])
    assert not table.remove(room)  # b still hears it
    assert not table.current(room)
    assert not table.remove(room)  # gone already: nothing changes
    assert table.members("rooms/1") == {a, b}  # a through its pattern
    assert table.remove(pattern)
    assert table.members("rooms/1") == {b}
    assert table.of(a) == []


def test_a_history_record_buffers_until_its_replay_went_and_then_takes_each_next_once() -> None:
    table = Subscriptions()
    record, _ = table.add(FakeSubscriber("a"), "feed")
    record.hold()
    assert record.kept
    assert record.buffer == []
    record.epoch, record.offset = "e", 3
    assert not record.takes(Position("e", 3))  # had it
    assert record.takes(Position("e", 4))
    assert not record.takes(Position("x", 5))  # another epoch: told, not taken
    assert record.behind(Position("x", 0))
    assert (record.epoch, record.offset) == ("x", 0)
    assert not record.behind(Position("x", 0))


def test_members_are_the_records_with_presence_info_by_topic() -> None:
    table = Subscriptions()
    a, b = FakeSubscriber("a"), FakeSubscriber("b")
    table.add(a, "lobby")[0].presence = b'{"name":"a"}'
    table.add(b, "lobby")
    table.add(b, "hall")[0].presence = b"{}"
    members = table.members_of_every_topic()
    assert {topic: [r.subscriber.id for r in records] for topic, records in members.items()} == {
        "lobby": ["a"],
        "hall": ["b"],
    }
