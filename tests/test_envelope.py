"""The envelope: reading decoded frames and building answers. Pure, no event loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from wsevents._envelope import (
    MAX_SAFE_INTEGER,
    BadEnvelope,
    envelope_schema,
    error_frame,
    event_frame,
    parse_envelope,
)


@pytest.mark.parametrize(
    ("frame", "parsed"),
    [
        ({"event": "a"}, ("a", None, None)),
        ({"event": "a", "data": [1], "id": "k"}, ("a", [1], "k")),
        ({"event": "a", "id": None}, ("a", None, None)),
        ({"event": "a", "id": MAX_SAFE_INTEGER}, ("a", None, MAX_SAFE_INTEGER)),
        ({"event": "a", "id": -MAX_SAFE_INTEGER}, ("a", None, -MAX_SAFE_INTEGER)),
        ({"event": "a", "id": "x" * 128}, ("a", None, "x" * 128)),
        ({"event": "a", "newer": "ignored"}, ("a", None, None)),
    ],
)
def test_good_envelopes_are_read(frame: dict[str, Any], parsed: tuple[Any, ...]) -> None:
    assert parse_envelope(frame) == parsed


@pytest.mark.parametrize(
    ("frame", "message", "request_id"),
    [
        ([], "a frame must be an object, got an array", None),
        (None, "a frame must be an object, got null", None),
        (b"x", "a frame must be an object, got binary data", None),
        ({"id": "k"}, "a frame must have an 'event'", "k"),
        ({"event": 1, "id": 2}, "'event' must be a non-empty string, got an integer", 2),
        ({"event": "", "id": 2}, "'event' must be a non-empty string, got a string", 2),
        ({"event": "a", "id": 1.0}, "'id' must be a string or an integer, got a number", None),
        ({"event": "a", "id": True}, "'id' must be a string or an integer, got a boolean", None),
        ({"event": "a", "id": {}}, "'id' must be a string or an integer, got an object", None),
        ({"event": "a", "id": MAX_SAFE_INTEGER + 1}, "'id' is an integer beyond", None),
        ({"event": "a", "id": "x" * 129}, "'id' is longer than 128 characters", None),
    ],
)
def test_bad_envelopes_say_what_is_wrong_and_keep_the_id_they_read(
    frame: Any, message: str, request_id: Any
) -> None:
    with pytest.raises(BadEnvelope) as caught:
        parse_envelope(frame)
    assert caught.value.message.startswith(message)
    assert caught.value.request_id == request_id


def test_frames_are_built_with_the_id_only_where_it_belongs() -> None:
    assert event_frame("said", {"a": 1}) == {"event": "said", "data": {"a": 1}}
    assert event_frame("ping", None, 7) == {"event": "ping", "data": None, "id": 7}
    assert error_frame("bad_frame", "oops") == {
        "event": "error",
        "data": {"code": "bad_frame", "message": "oops", "details": None},
        "id": None,
    }


ROOT = Path(__file__).resolve().parent.parent


def test_schemas_envelope_file_is_fresh() -> None:
    written = json.loads((ROOT / "schemas" / "envelope.schema.json").read_text())
    assert written == envelope_schema(), "schemas/ is stale: run `make schemas`"


@pytest.mark.parametrize(
    ("frame", "valid"),
    [
        ({"event": "say", "data": {"text": "hi"}, "id": "k1"}, True),
        ({"event": "said", "data": [1]}, True),
        ({"event": "ping", "id": MAX_SAFE_INTEGER}, True),
        (error_frame("bad_frame", "oops"), True),
        (error_frame("mine", "app code", {"any": 1}, 3), True),
        ({"event": "error", "data": {"code": "x"}, "id": None}, False),
        ({"event": ""}, False),
        ({"data": 1}, False),
        ({"event": "a", "id": 1.5}, False),
        ({"event": "a", "id": MAX_SAFE_INTEGER + 1}, False),
        ({"event": "a", "id": "x" * 129}, False),
        ([], False),
    ],
)
def test_the_schema_accepts_what_the_parser_accepts(frame: Any, valid: bool) -> None:
    errors = list(Draft202012Validator(envelope_schema()).iter_errors(frame))
    assert (not errors) is valid
    if frame and isinstance(frame, dict) and frame.get("event") != "error":
        try:
            parse_envelope(frame)
            parsed = True
        except BadEnvelope:
            parsed = False
        assert parsed is valid
