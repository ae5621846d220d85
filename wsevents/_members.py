"""Presence's rule and a member's info (pure): what the runtime, the builder and the docs share.

A connection subscribed to a topic that matches a :class:`Presence` rule is a
member of it, with the JSON object it gave as ``presence=``; its info travels
as compact JSON (:func:`encode_info`). The members themselves are
``_presence``'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_jsonable_python

from ._history import check_positive
from ._wildcards import check_pattern

__all__ = ["PRESENCE_EVENT", "Presence", "encode_info"]

PRESENCE_EVENT = "wsevents.presence"


@dataclass(frozen=True)
class Presence:
    """Track the members of every topic that matches ``pattern``.

    Args:
        pattern: a topic or an MQTT pattern (``+`` one level, ``#`` the rest).
        diffs: send subscribers ``wsevents.presence`` frames (switch off for
            rooms too large for everyone to hear every join and leave; the
            members and their count can still be read).
        interval: the window, in seconds, whose changes go in one frame.
        ttl: how long a member outlives its process, in seconds (each process
            refreshes its members every ``ttl / 3``).
    """

    pattern: str
    diffs: bool = True
    interval: float = 0.5
    ttl: float = 30.0

    def __post_init__(self) -> None:
        check_pattern(self.pattern)
        if not isinstance(self.diffs, bool):
            raise ValueError(f"Presence diffs must be True or False, got {self.diffs!r}")
        check_positive(self, "interval", "ttl")


def encode_info(info: Any) -> bytes:
    """A member's info as the backplane keeps it: compact JSON of an object.

    Raises:
        TypeError: ``info`` is not a mapping, or holds what JSON cannot carry.
    """
    if info is None:
        return b"{}"
    if not isinstance(info, dict):
        raise TypeError(f"presence= must be a JSON object (a dict), got {type(info).__name__}")
    try:
        return json.dumps(to_jsonable_python(info), separators=(",", ":")).encode()
    except Exception as exc:
        raise TypeError(f"presence= must be JSON-serializable: {exc}") from None
