"""Declarative, decorator-based WebSocket event routing for ASGI, with AsyncAPI docs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._app import EventApp
from ._connection import Connection
from ._history import History, Position, Publication
from ._limits import Limits
from ._members import Presence
from ._routing import Channel
from .codecs import Codec, JSONCodec, MessagePackCodec
from .exceptions import (
    BackplaneUnavailable,
    CloseCode,
    ConnectionGone,
    DecodeError,
    ErrorCode,
    EventError,
    PayloadError,
    RegistrationError,
    Reject,
    RequestTimeout,
    TopicError,
    WSEventsError,
)

if TYPE_CHECKING:
    from ._depends import Depends

__version__ = "0.1.0"

__all__ = [
    "BackplaneUnavailable",
    "Channel",
    "CloseCode",
    "Codec",
    "Connection",
    "ConnectionGone",
    "DecodeError",
    "Depends",
    "ErrorCode",
    "EventApp",
    "EventError",
    "History",
    "JSONCodec",
    "Limits",
    "MessagePackCodec",
    "PayloadError",
    "Position",
    "Presence",
    "Publication",
    "RegistrationError",
    "Reject",
    "RequestTimeout",
    "TopicError",
    "WSEventsError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """``Depends``: FastAPI's where it is installed, else wsevents' own (imported when asked)."""
    if name == "Depends":
        try:
            from fastapi import Depends
        except ImportError:
            from ._depends import Depends  # type: ignore[assignment, unused-ignore]
        return Depends
    raise AttributeError(f"module 'wsevents' has no attribute {name!r}")
