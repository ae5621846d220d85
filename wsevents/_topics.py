"""Topics: the table of who hears what, exact topics and MQTT wildcard patterns (pure).

Topic names and MQTT wildcard matching are pure functions in ``_wildcards``,
re-exported here; the backplanes use them too. The records of the
subscriptions themselves are ``_subscriptions``'s, which keeps this table.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from ._wildcards import (
    MAX_TOPIC_LENGTH,
    check_pattern,
    check_topic,
    is_pattern,
    match_levels,
    matches,
)

__all__ = [
    "MAX_TOPIC_LENGTH",
    "Topics",
    "check_pattern",
    "check_topic",
    "is_pattern",
    "matches",
]

M = TypeVar("M")


class Topics(Generic[M]):
    """Who subscribed to what, in this process: exact topics and wildcard patterns."""

    def __init__(self) -> None:
        self._exact: dict[str, set[M]] = {}
        self._patterns: dict[str, tuple[tuple[str, ...], set[M]]] = {}

    def add(self, subscription: str, member: M) -> bool:
        """Subscribe ``member``; return whether it is the subscription's first member."""
        if is_pattern(subscription):
            entry = self._patterns.get(subscription)
            if entry is None:
                self._patterns[subscription] = (tuple(subscription.split("/")), {member})
                return True
            entry[1].add(member)
            return False
        members = self._exact.get(subscription)
        if members is None:
            self._exact[subscription] = {member}
            return True
        members.add(member)
        return False

    def discard(self, subscription: str, member: M) -> bool:
        """Unsubscribe ``member``; return whether the subscription now has no member."""
        if is_pattern(subscription):
            entry = self._patterns.get(subscription)
            if entry is None or member not in entry[1]:
                return False
            entry[1].discard(member)
            if entry[1]:
                return False
            del self._patterns[subscription]
            return True
        members = self._exact.get(subscription)
        if members is None or member not in members:
            return False
        members.discard(member)
        if members:
            return False
        del self._exact[subscription]
        return True

    def members(self, topic: str) -> set[M]:
        """Return everyone whose subscriptions match ``topic``, each once (a new set)."""
        found = set(self._exact.get(topic, ()))
        if self._patterns:
            levels = topic.split("/")
            for pattern, members in self._patterns.values():
                if match_levels(pattern, levels):
                    found |= members
        return found

    def exact(self, topic: str) -> set[M]:
        """The members subscribed to exactly ``topic`` (the table's own set: do not change it)."""
        return self._exact.get(topic) or set()

    def heard(self, topic: str) -> bool:
        """Whether anyone's subscriptions match ``topic`` (no set is made)."""
        if self._exact.get(topic):
            return True
        if self._patterns:
            levels = topic.split("/")
            return any(match_levels(pattern, levels) for pattern, _ in self._patterns.values())
        return False

    def subscriptions(self) -> list[str]:
        """Every topic and pattern with at least one member."""
        return [*self._exact, *self._patterns]

    def __len__(self) -> int:
        return len(self._exact) + len(self._patterns)
