"""Topic names and MQTT wildcard matching: pure functions, shared by the topic table
and the backplanes.

A topic is ``/``-separated levels (``rooms/lobby``). A subscription may use
MQTT's wildcards: ``+`` matches exactly one level, ``#`` (alone, as the last
level) matches any number of levels, the parent included: ``alerts/#``
matches ``alerts``, ``alerts/fire`` and ``alerts/fire/east``. Topics that start
with ``$`` are the system's own; wildcards at the start of a pattern do not
match them, as in MQTT.
"""

from __future__ import annotations

from .exceptions import TopicError

__all__ = [
    "MAX_TOPIC_LENGTH",
    "check_pattern",
    "check_topic",
    "is_pattern",
    "match_levels",
    "matches",
]

MAX_TOPIC_LENGTH = 1024


def _check_text(topic: object, what: str) -> str:
    if not isinstance(topic, str) or not topic:
        raise TopicError(f"a {what} must be a non-empty string, got {topic!r}")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise TopicError(f"{what} {topic[:40]!r}... is longer than {MAX_TOPIC_LENGTH} characters")
    if "\x00" in topic:
        raise TopicError(f"{what} {topic!r} contains a NUL character")
    if topic.startswith("$"):
        raise TopicError(f"{what} {topic!r}: topics starting with '$' are reserved")
    return topic


def check_topic(topic: object) -> str:
    """Return ``topic`` if it is a valid topic to publish to, else raise ``TopicError``."""
    _check_text(topic, "topic")
    assert isinstance(topic, str)
    if "+" in topic or "#" in topic:
        raise TopicError(f"topic {topic!r}: wildcards '+' and '#' are for subscriptions only")
    return topic


def check_pattern(pattern: object) -> str:
    """Return ``pattern`` if it is a valid subscription, else raise ``TopicError``."""
    _check_text(pattern, "subscription")
    assert isinstance(pattern, str)
    levels = pattern.split("/")
    for index, level in enumerate(levels):
        if ("+" in level or "#" in level) and level not in ("+", "#"):
            raise TopicError(
                f"subscription {pattern!r}: a wildcard must be a whole level, got {level!r}"
            )
        if level == "#" and index != len(levels) - 1:
            raise TopicError(f"subscription {pattern!r}: '#' must be the last level")
    return pattern


def is_pattern(subscription: str) -> bool:
    """Whether ``subscription`` has wildcards."""
    return "+" in subscription or "#" in subscription


def matches(pattern: str, topic: str) -> bool:
    """Whether MQTT subscription ``pattern`` matches ``topic``."""
    return match_levels(pattern.split("/"), topic.split("/"))


def match_levels(pattern: list[str] | tuple[str, ...], levels: list[str]) -> bool:
    if levels[0].startswith("$") and pattern[0] in ("+", "#"):
        return False
    for index, part in enumerate(pattern):
        if part == "#":
            return True
        if index >= len(levels) or (part != "+" and part != levels[index]):
            return False
    return len(pattern) == len(levels)
