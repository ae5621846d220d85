"""Topic names and local membership: pure, no event loop."""

from __future__ import annotations

from typing import Any

import pytest

from wsevents import TopicError
from wsevents._topics import MAX_TOPIC_LENGTH, Topics, check_pattern, check_topic, matches


@pytest.mark.parametrize("topic", ["rooms/lobby", "a", "a//b", "x" * MAX_TOPIC_LENGTH])
def test_valid_topics_pass(topic: str) -> None:
    assert check_topic(topic) == topic


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        ("", "non-empty string"),
        (5, "non-empty string"),
        ("x" * (MAX_TOPIC_LENGTH + 1), "longer than"),
        ("rooms/+", "wildcards"),
        ("rooms/#", "wildcards"),
        ("a\x00b", "NUL"),
        ("$node/x", "reserved"),
    ],
)
def test_invalid_topics_raise(topic: Any, message: str) -> None:
    with pytest.raises(TopicError, match=message):
        check_topic(topic)


def test_membership_reports_first_and_last_member() -> None:
    topics: Topics[str] = Topics()
    assert topics.add("t", "a") is True
    assert topics.add("t", "b") is False
    assert topics.add("t", "b") is False
    assert topics.members("t") == {"a", "b"}
    assert topics.discard("t", "a") is False
    assert topics.discard("t", "a") is False
    assert topics.discard("other", "a") is False
    assert topics.discard("t", "b") is True
    assert topics.members("t") == frozenset()
    assert len(topics) == 0


@pytest.mark.parametrize("pattern", ["a/+/c", "+", "#", "a/#", "+/+", "a//+", "plain/topic"])
def test_valid_patterns_pass(pattern: str) -> None:
    assert check_pattern(pattern) == pattern


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a/b+/c", "a wildcard must be a whole level"),
        ("a/#/c", "'#' must be the last level"),
        ("a/x#", "a wildcard must be a whole level"),
        ("$node/+", "reserved"),
        ("", "non-empty"),
    ],
)
def test_invalid_patterns_raise(pattern: str, message: str) -> None:
    with pytest.raises(TopicError, match=message):
        check_pattern(pattern)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/b/c", False),
        ("a/+", "a/b", True),
        ("a/+", "a", False),
        ("a/+", "a/b/c", False),
        ("+/b", "a/b", True),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("a/#", "ab", False),
        ("#", "anything/at/all", True),
        ("+/+", "a/b", True),
        ("a//+", "a//x", True),
        ("#", "$node/1", False),
        ("+/1", "$node/1", False),
        ("$node/1", "$node/1", True),
    ],
)
def test_mqtt_matching(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected


def test_members_match_wildcards_once_per_member() -> None:
    topics: Topics[str] = Topics()
    topics.add("news/sports", "ann")
    topics.add("news/+", "ann")
    topics.add("news/#", "bob")
    topics.add("weather/+", "cy")
    assert topics.members("news/sports") == {"ann", "bob"}
    assert topics.members("news") == {"bob"}
    assert topics.subscriptions() == ["news/sports", "news/+", "news/#", "weather/+"]
    assert topics.discard("news/+", "ann") is True
    assert topics.discard("news/+", "ann") is False
    assert topics.discard("weather/+", "ann") is False
    assert topics.members("news/sports") == {"ann", "bob"}


def test_heard_says_whether_any_subscription_matches() -> None:
    table: Topics[str] = Topics()
    assert not table.heard("rooms/a")
    table.add("rooms/a", "ann")
    table.add("alerts/#", "bob")
    assert table.heard("rooms/a")
    assert table.heard("alerts/fire/east")
    assert not table.heard("rooms/b")
    table.discard("rooms/a", "ann")
    assert not table.heard("rooms/a")
