"""Local topic membership: which connections of this process hear a topic."""

from __future__ import annotations

from typing import Generic, TypeVar

from .exceptions import TopicError

__all__ = ["MAX_TOPIC_LENGTH", "Topics", "check_topic"]

MAX_TOPIC_LENGTH = 1024
M = TypeVar("M")


def check_topic(topic: object) -> str:
    """Return ``topic`` if it is a valid topic name, else raise ``TopicError``.

    A topic is a non-empty string of ``/``-separated levels.
    """
    if not isinstance(topic, str) or not topic:
        raise TopicError(f"a topic must be a non-empty string, got {topic!r}")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise TopicError(f"topic {topic[:40]!r}... is longer than {MAX_TOPIC_LENGTH} characters")
    if "+" in topic or "#" in topic:
        raise TopicError(f"topic {topic!r}: wildcards '+' and '#' are not supported")
    if "\x00" in topic:
        raise TopicError(f"topic {topic!r} contains a NUL character")
    return topic


class Topics(Generic[M]):
    """Members of each topic, for one process."""

    def __init__(self) -> None:
        self._members: dict[str, set[M]] = {}

    def add(self, topic: str, member: M) -> bool:
        """Add ``member`` to ``topic``; return whether it is the topic's first member."""
        members = self._members.get(topic)
        if members is None:
            self._members[topic] = {member}
            return True
        members.add(member)
        return False

    def discard(self, topic: str, member: M) -> bool:
        """Remove ``member`` from ``topic``; return whether the topic is now empty."""
        members = self._members.get(topic)
        if members is None or member not in members:
            return False
        members.discard(member)
        if not members:
            del self._members[topic]
            return True
        return False

    def members(self, topic: str) -> frozenset[M]:
        """Return the members of ``topic`` (a copy: delivery may change membership)."""
        members = self._members.get(topic)
        return frozenset(members) if members else frozenset()

    def __len__(self) -> int:
        return len(self._members)
