"""The envelope: every frame is ``{"event": ..., "data": ..., "id": ...}``.

Pure functions that read a decoded frame and build the frames we answer with.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from .exceptions import ErrorCode, EventError

__all__ = [
    "ASK",
    "MAX_ID_LENGTH",
    "MAX_SAFE_INTEGER",
    "REFRESH_EVENT",
    "SESSION_PARAMETER",
    "SESSION_PATTERN",
    "BadEnvelope",
    "Message",
    "RequestId",
    "ask_frame",
    "envelope_schema",
    "error_frame",
    "event_error",
    "event_frame",
    "parse_answer",
    "parse_envelope",
    "valid_session",
]

ASK = "ask"  # the key of a server request and of its answer: section 12
REFRESH_EVENT = "wsevents.refresh"  # the server request for a fresh token: section 15
# The handshake query parameter that names a client's session: section 12.
SESSION_PARAMETER = "wsevents-session"
SESSION_PATTERN = r"^[A-Za-z0-9_-]{16,128}$"  # as the AsyncAPI document states it
_SESSION = re.compile(SESSION_PATTERN)

MAX_ID_LENGTH = 128
# Integers beyond this lose precision in a browser's Number.
MAX_SAFE_INTEGER = 2**53 - 1

RequestId = str | int | None


class Message(NamedTuple):
    """One frame as a client sees it; ``ask`` is set on a server request."""

    event: str
    data: Any
    id: RequestId = None
    ask: str | None = None


def valid_session(session: str) -> bool:
    """Whether ``session`` is a good ``wsevents-session``: 16 to 128 of ``[A-Za-z0-9_-]``."""
    return _SESSION.fullmatch(session) is not None


class BadEnvelope(Exception):
    """A decoded frame that is not an envelope; ``request_id`` is what could be read."""

    def __init__(self, message: str, request_id: RequestId = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id


def parse_envelope(obj: Any) -> tuple[str, Any, RequestId]:
    """Return ``(event, data, id)`` from a decoded frame.

    The ``id`` is read first, so that an error about ``event`` can echo it.

    Raises:
        BadEnvelope: ``obj`` is not an object, or its ``event`` or ``id`` is bad.
    """
    if type(obj) is not dict:
        raise BadEnvelope(f"a frame must be an object, got {_json_type(obj)}")
    request_id = obj.get("id")
    if request_id is not None:
        kind = type(request_id)
        if kind is str:
            if len(request_id) > MAX_ID_LENGTH:
                raise BadEnvelope(f"'id' is longer than {MAX_ID_LENGTH} characters")
        elif kind is int:
            if not -MAX_SAFE_INTEGER <= request_id <= MAX_SAFE_INTEGER:
                raise BadEnvelope("'id' is an integer beyond +/-(2**53-1)")
        else:
            raise BadEnvelope(f"'id' must be a string or an integer, got {_json_type(request_id)}")
    event = obj.get("event")
    if type(event) is not str or not event:
        if event is None:
            raise BadEnvelope("a frame must have an 'event'", request_id)
        raise BadEnvelope(
            f"'event' must be a non-empty string, got {_json_type(event)}", request_id
        )
    return event, obj.get("data"), request_id


def event_frame(event: str, data: Any, request_id: RequestId = None) -> dict[str, Any]:
    """Build a push (no ``id``) or a reply (the request's ``id``)."""
    if request_id is None:
        return {"event": event, "data": data}
    return {"event": event, "data": data, "id": request_id}


def ask_frame(event: str, data: Any, ask: str) -> dict[str, Any]:
    """Build a server request: the client answers with the same ``event`` and ``ask``."""
    return {"event": event, "data": data, ASK: ask}


def parse_answer(obj: dict[str, Any]) -> tuple[str, str | None, Any]:
    """Return ``(ask, event, data)`` from a decoded frame that has an ``ask`` key.

    ``ask`` is ``""`` where it is not a string (nobody waits for that one);
    ``event`` is ``None`` where it is not a non-empty string.
    """
    ask = obj.get(ASK)
    event = obj.get("event")
    return (
        ask if type(ask) is str else "",
        event if type(event) is str and event else None,
        obj.get("data"),
    )


def error_frame(
    code: str, message: str, details: Any = None, request_id: RequestId = None
) -> dict[str, Any]:
    """Build an error frame; its ``id`` is ``null`` when the request had none."""
    return {
        "event": "error",
        "data": {"code": code, "message": message, "details": details},
        "id": request_id,
    }


def envelope_schema() -> dict[str, Any]:
    """Return the JSON Schema (2020-12) of every frame, both ways.

    ``schemas/envelope.schema.json`` is this, written out; a test keeps it fresh.
    """
    request_id = {
        "description": "Echoed exactly as it came; null is the same as no id.",
        "oneOf": [
            {"type": "string", "maxLength": MAX_ID_LENGTH},
            {"type": "integer", "minimum": -MAX_SAFE_INTEGER, "maximum": MAX_SAFE_INTEGER},
            {"type": "null"},
        ],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "wsevents envelope",
        "description": (
            "Every wsevents frame, both ways: a JSON object in a text frame or a MessagePack "
            "map in a binary frame. Unknown top-level keys are ignored."
        ),
        "type": "object",
        "required": ["event"],
        "properties": {
            "event": {"type": "string", "minLength": 1},
            "data": {"description": "The event's payload, validated against its model."},
            "id": {"$ref": "#/$defs/id"},
            ASK: {
                "type": "string",
                "maxLength": MAX_ID_LENGTH,
                "description": (
                    "On a server request, the key its answer carries back; a frame from "
                    "the client with it is that answer (or an error frame refusing it), "
                    "never a request: its id is ignored."
                ),
            },
        },
        "if": {"properties": {"event": {"const": "error"}}},
        "then": {
            "anyOf": [{"required": ["event", "data", "id"]}, {"required": ["event", "data", ASK]}],
            "properties": {"data": {"$ref": "#/$defs/error"}},
        },
        "$defs": {
            "id": request_id,
            "error": {
                "description": "The data of an error frame.",
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": {
                        "type": "string",
                        "description": "One of the protocol's codes, or an application's own.",
                        "examples": [code.value for code in ErrorCode],
                    },
                    "message": {"type": "string"},
                    "details": {
                        "description": (
                            "For validation_error, a list of {loc, msg, type}; "
                            "else what the application put there, or null."
                        )
                    },
                },
            },
        },
    }


_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    bytes: "binary data",
    type(None): "null",
}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def event_error(data: Any) -> EventError:
    """The ``EventError`` an error frame's ``data`` stands for, either way on the wire.

    Its ``code``, ``message`` and ``details``; an error frame without a code
    is still an error, said to be malformed (``bad_frame``, the data as its
    details).
    """
    if not isinstance(data, dict) or not isinstance(data.get("code"), str) or not data["code"]:
        return EventError(ErrorCode.BAD_FRAME.value, "an error frame without a code", data)
    message = data.get("message")
    return EventError(
        data["code"], message if isinstance(message, str) else "", data.get("details")
    )
