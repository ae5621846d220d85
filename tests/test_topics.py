"""Topic names and local membership: pure, no event loop."""

from __future__ import annotations

from typing import Any

import pytest

from wsevents import TopicError
from wsevents._topics import MAX_TOPIC_LENGTH, Topics, check_topic


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
