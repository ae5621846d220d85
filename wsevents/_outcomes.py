"""What the connection core (:mod:`wsevents._protocol`) hands back, and its states.

Plain values: the state a connection is in, a close frame to send, what
became of a pushed frame, an answer to a server request, and the errors of
a transition the state does not allow.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, NamedTuple

__all__ = [
    "Answered",
    "Close",
    "ConnectionState",
    "InvalidState",
    "Pushed",
    "Replayed",
    "TooManyRequests",
]

Frame = str | bytes


class ConnectionState(Enum):
    """Where a connection is in its life."""

    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class InvalidState(RuntimeError):
    """A transition that the connection's state does not allow."""


class Close(NamedTuple):
    """A close frame to send: its code and reason."""

    code: int
    reason: str


class TooManyRequests(RuntimeError):
    """A server request beyond ``Limits.max_requests`` open on one connection."""


class Answered(NamedTuple):
    """A client's answer to an open server request: what its waiter gets."""

    waiter: Any  # whatever :meth:`ConnectionCore.ask` was given; the core never touches it
    event: str | None
    data: Any


class Pushed(Enum):
    """What became of a frame handed to :meth:`ConnectionCore.push`."""

    SEND = "send"  # nothing ahead of it: send it now (the core counts it as sending)
    QUEUED = "queued"  # in the outbox; the writer must run
    HELD = "held"  # in the outbox until the handshake is accepted
    DROPPED = "dropped"  # the connection is closing or closed
    OVERFLOWED = "overflowed"  # the outbox was full: the connection is aborted


class Replayed:
    """A frame of a replay in the outbox: it does not count against ``Limits.send_queue``."""

    __slots__ = ("frame",)

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
