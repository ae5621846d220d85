"""Declarative, decorator-based WebSocket event routing for ASGI, with AsyncAPI docs."""

from __future__ import annotations

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

__version__ = "0.1.0"

__all__ = [
    "BackplaneUnavailable",
    "Channel",
    "CloseCode",
    "Codec",
    "Connection",
    "ConnectionGone",
    "DecodeError",
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
