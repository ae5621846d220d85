"""Resumable topics: the ``History`` rule, positions, and the ``wsevents-resume`` parameter.

A topic that matches a :class:`History` rule keeps its last publications in
the backplane, each at a :class:`Position` (an ``epoch`` that changes when
the history is lost, an ``offset`` that grows by one per publication). A
client names the positions it holds when it reconnects, and gets what it
missed before anything live. Pure: the broker and the backplanes use it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

from ._envelope import event_frame
from ._wildcards import check_pattern, matches

if TYPE_CHECKING:
    from .codecs import Codec

__all__ = [
    "RESUME_PARAMETER",
    "SUBSCRIBED_EVENT",
    "BadResume",
    "History",
    "Position",
    "Publication",
    "check_positive",
    "first_rule",
    "history_frame",
    "history_rule",
    "parse_resume",
    "subscribed_frame",
]

RESUME_PARAMETER = "wsevents-resume"
SUBSCRIBED_EVENT = "wsevents.subscribed"


class Position(NamedTuple):
    """Where a topic's history stands: its ``epoch`` and the ``offset`` of its last publication."""

    epoch: str
    offset: int


class Publication(NamedTuple):
    """One kept publication, as :meth:`EventApp.history` returns it."""

    event: str
    data: Any
    topic: str
    epoch: str
    offset: int


@dataclass(frozen=True)
class History:
    """Keep the publications of every topic that matches ``pattern``.

    Args:
        pattern: a topic or an MQTT pattern (``+`` one level, ``#`` the rest).
        size: at least this many of a topic's last publications are kept.
        ttl: each for this many seconds.
        publish_timeout: how long ``publish`` (and ``subscribe``) wait for the
            backplane to confirm before raising ``BackplaneUnavailable``.
    """

    pattern: str
    size: int = 256
    ttl: float = 300.0
    publish_timeout: float = 5.0

    def __post_init__(self) -> None:
        check_pattern(self.pattern)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"History size must be a positive integer, got {self.size!r}")
        check_positive(self, "ttl", "publish_timeout")


def check_positive(rule: object, *names: str) -> None:
    """Raise ``ValueError`` unless each attribute ``names`` of ``rule`` is a positive number."""
    for name in names:
        value = getattr(rule, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            kind = type(rule).__name__
            raise ValueError(f"{kind} {name} must be a positive number, got {value!r}")


class _Rule(Protocol):
    @property
    def pattern(self) -> str: ...


R = TypeVar("R", bound=_Rule)


def first_rule(rules: Iterable[R], topic: str) -> R | None:
    """The first rule whose ``pattern`` matches ``topic``, or ``None``."""
    for rule in rules:
        if matches(rule.pattern, topic):
            return rule
    return None


def history_rule(rules: Iterable[History], topic: str) -> History | None:
    """The first ``History`` rule that matches ``topic``, or ``None``."""
    return first_rule(rules, topic)


class BadResume(ValueError):
    """A ``wsevents-resume`` parameter that is not an object of topic to ``[epoch, offset]``."""


def parse_resume(raw: str | None) -> dict[str, Position]:
    """Read the positions a client names in ``wsevents-resume`` (already URL-decoded).

    Raises:
        BadResume: not JSON, not an object, or a value other than a
            two-element array of a string and a non-negative integer.
    """
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise BadResume(f"{RESUME_PARAMETER} is not JSON") from None
    if not isinstance(value, dict):
        raise BadResume(f"{RESUME_PARAMETER} must be a JSON object of topic to [epoch, offset]")
    positions = {}
    for topic, held in value.items():
        if (
            not isinstance(held, list)
            or len(held) != 2
            or not isinstance(held[0], str)
            or type(held[1]) is not int
            or held[1] < 0
        ):
            raise BadResume(
                f"{RESUME_PARAMETER}: the position of {topic!r} must be"
                " [epoch, offset], a string and a non-negative integer"
            )
        positions[topic] = Position(held[0], held[1])
    return positions


def history_frame(
    codec: Codec, emit: Any, topic: str, position: Position, message: dict[str, Any]
) -> str | bytes:
    """A push of a history topic, in ``codec``: the envelope and its position.

    ``emit`` is the subscriber's channel's declaration of the event (``None``:
    none), which dumps the data.
    """
    event, data = message["e"], message["d"]
    frame = event_frame(event, data if emit is None else emit.dump(data))
    frame["topic"], frame["epoch"], frame["offset"] = topic, position.epoch, position.offset
    return codec.encode(frame)


def subscribed_frame(
    codec: Codec, topic: str, position: Position, recovered: bool | None
) -> str | bytes:
    """``wsevents.subscribed``: where a subscriber of a history topic now stands."""
    data = {
        "topic": topic,
        "epoch": position.epoch,
        "offset": position.offset,
        "recovered": recovered,
    }
    return codec.encode(event_frame(SUBSCRIBED_EVENT, data))
