"""Exceptions, error codes and close codes.

The tree::

    WSEventsError
     ├── RegistrationError      a bad decorator or Channel; raised at import time
     ├── Reject                 raised in ``on_connect``: refuse the handshake (HTTP status)
     ├── EventError             raised in a handler: the client gets that error frame
     ├── PayloadError           ``send``/``publish`` data that does not match ``emits`` (ValueError)
     ├── TopicError             a topic name that is not valid (ValueError)
     ├── BackplaneUnavailable   a history or ``once`` step the backplane did not confirm
     ├── RequestTimeout         no answer to a server request in time (TimeoutError)
     ├── ConnectionGone         the connection asked closed first (ConnectionError)
     └── DecodeError            a frame a codec cannot decode: ``bad_frame`` on the wire
          └── DuplicateKeyError a repeated key in an object

Errors that reach the wire carry their error code (``ErrorCode``) or their
close code (``CloseCode``).
"""

from __future__ import annotations

from enum import Enum, IntEnum
from typing import Any

__all__ = [
    "BackplaneUnavailable",
    "CloseCode",
    "ConnectionGone",
    "DecodeError",
    "DuplicateKeyError",
    "ErrorCode",
    "EventError",
    "PayloadError",
    "RegistrationError",
    "Reject",
    "RequestTimeout",
    "TopicError",
    "WSEventsError",
]


class CloseCode(IntEnum):
    """WebSocket close codes that wsevents sends (RFC 6455, section 7.4.1)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    CREDENTIALS_EXPIRED = 4401  # the credentials expired, or a refresh was refused
    ENDED_BY_APP = 4403  # EventApp.disconnect: clients do not reconnect after it


class ErrorCode(str, Enum):
    """The ``code`` of an error frame that wsevents itself sends."""

    BAD_FRAME = "bad_frame"
    BAD_ENVELOPE = "bad_envelope"
    UNKNOWN_EVENT = "unknown_event"
    VALIDATION_ERROR = "validation_error"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"
    # The backplane did not answer: a once request's claim, a handler's presence read
    # or history publish (a BackplaneUnavailable the app does not map).
    UNAVAILABLE = "unavailable"

    def __str__(self) -> str:
        return self.value


class WSEventsError(Exception):
    """The root of every exception wsevents raises."""


class RegistrationError(WSEventsError, TypeError):
    """A channel, handler or hook that cannot be registered as written."""


class Reject(WSEventsError):
    """Refuse a WebSocket handshake with an HTTP status.

    Raise it in an ``on_connect`` hook::

        raise Reject(401, "a token is required")
    """

    def __init__(self, status: int = 403, reason: str = "") -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"a rejection status must be 4xx or 5xx, got {status!r}")
        super().__init__(status, reason)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.status} {self.reason}".rstrip()


class EventError(WSEventsError):
    """An error frame for the client: raise it in a handler.

    Args:
        code: a short machine-readable code, such as ``"not_found"``.
        message: a sentence for a person.
        details: anything JSON can carry, for the client to act on.
    """

    def __init__(self, code: str, message: str = "", details: Any = None) -> None:
        if not isinstance(code, str) or not code:
            raise ValueError(f"an error code must be a non-empty string, got {code!r}")
        super().__init__(code, message)
        self.code = str(code)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


class PayloadError(WSEventsError, ValueError):
    """Data sent to a client does not match the model its event ``emits``."""


class TopicError(WSEventsError, ValueError):
    """A topic name or subscription pattern that is not valid."""


class BackplaneUnavailable(WSEventsError):
    """The backplane did not confirm in time that a history topic's publication was kept.

    Raised by ``publish`` to a history topic (the publication reached nobody)
    and by ``subscribe`` to one (raised in ``on_connect``, it refuses the
    handshake with 503).
    """


class RequestTimeout(WSEventsError, TimeoutError):
    """No answer to a server request (``conn.request``, ``EventApp.request``) came in time.

    The builtin ``TimeoutError`` on every supported Python (on 3.10 not
    ``asyncio.TimeoutError``, which is another class there).
    """


class ConnectionGone(WSEventsError, ConnectionError):
    """The connection a server request was made of closed, or no live process holds it."""


class DecodeError(WSEventsError, ValueError):
    """A frame that a codec cannot decode."""


class DuplicateKeyError(DecodeError):
    """An object in a frame repeats a key.

    ``top_level`` is true when the repeated key is the envelope's own, which the
    protocol answers with ``bad_envelope`` rather than ``bad_frame``;
    ``decoded`` is the frame with the last value of each key, so that the
    answer can echo the request's ``id``.
    """

    def __init__(self, key: object, *, top_level: bool, decoded: Any = None) -> None:
        super().__init__(f"repeated key {key!r}")
        self.key = key
        self.top_level = top_level
        self.decoded = decoded
