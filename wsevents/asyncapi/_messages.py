"""The pieces of the AsyncAPI document that are messages: envelopes, examples, keys, schemas.

Every message's payload is the whole envelope (``event`` as a one-value enum,
``data`` a ``$ref`` to the model, ``id``); the protocol's own payloads
(errors, ``wsevents.subscribed``, ``wsevents.presence``) are schemas of their
own. Pure functions, used by the channel builder.

Over 300 lines: the protocol's own schemas, and every kind of message the
channel builder writes, with its example.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import KeysView, Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .._envelope import MAX_ID_LENGTH, MAX_SAFE_INTEGER, SESSION_PARAMETER, SESSION_PATTERN
from .._history import RESUME_PARAMETER, SUBSCRIBED_EVENT
from ..exceptions import CloseCode, ErrorCode
from ._schemas import REF_PREFIX, SchemaSet, example_for

ASYNCAPI_VERSION = "3.0.0"
REQUEST_ID = "wsevents.RequestId"
TRACE_PARENT = "wsevents.TraceParent"
TRACE_STATE = "wsevents.TraceState"
ERROR_DATA = "wsevents.ErrorData"
SUBSCRIBED_DATA = "wsevents.Subscribed"
PRESENCE_DATA = "wsevents.PresenceDiff"
REFRESH_DATA = "wsevents.Refresh"
REFRESH_ANSWER_DATA = "wsevents.RefreshAnswer"
CORRELATION = {"$ref": "#/components/correlationIds/requestId"}
ASK_CORRELATION = {"$ref": "#/components/correlationIds/ask"}
KEY = re.compile(r"[^A-Za-z0-9_]+")
JAVASCRIPT_WORDS = frozenset(
    {"case", "catch", "class", "const", "debugger", "default", "delete", "do", "enum"}
    | {"export", "extends", "function", "implements", "instanceof", "interface", "let"}
    | {"new", "null", "package", "private", "protected", "public", "static", "super"}
    | {"switch", "this", "throw", "typeof", "var", "void"}
)
# Message and operation keys become names in generated code: none of these words.
RESERVED_WORDS = frozenset(word.lower() for word in keyword.kwlist) | JAVASCRIPT_WORDS

DEFAULT_SERVER = "ws://localhost:8000"

ERROR_CODES = {
    ErrorCode.BAD_FRAME: "the frame is not JSON (text) or MessagePack (binary)",
    ErrorCode.BAD_ENVELOPE: "not an object, no or bad `event`, a bad `id`",
    ErrorCode.UNKNOWN_EVENT: "no handler for this event on this channel",
    ErrorCode.VALIDATION_ERROR: "`data` does not match the event's model; "
    "`details` lists pydantic's `loc`, `msg` and `type`",
    ErrorCode.RATE_LIMITED: "too many events from this connection",
    ErrorCode.INTERNAL_ERROR: "the handler failed; no exception text is sent",
    ErrorCode.UNAVAILABLE: "a `once` request could not be checked against earlier runs "
    "(the backplane could not be reached): its handler did not run; send it again",
}
# The close codes wsevents sends, and what a client should do after each.
CLOSE_CODES = {
    CloseCode.NORMAL_CLOSURE: "closed by the application, or idle for `Limits.idle_timeout`",
    CloseCode.GOING_AWAY: "the server is shutting down: reconnect",
    CloseCode.POLICY_VIOLATION: "too many frames refused by the rate limit, or waiting",
    CloseCode.MESSAGE_TOO_BIG: "a frame over `Limits.max_message_bytes`",
    CloseCode.INTERNAL_ERROR: "the server failed",
    CloseCode.TRY_AGAIN_LATER: "the client read too slowly (its send queue filled, or a send "
    "timed out): reconnect",
    CloseCode.CREDENTIALS_EXPIRED: "the credentials expired, or a refresh was refused: "
    "reconnect only with a fresh token",
    CloseCode.ENDED_BY_APP: "ended by the application (`EventApp.disconnect`): do not reconnect",
}
PARAMETER_KINDS = {
    "str": "one path segment",
    "int": "a non-negative integer",
    "float": "a non-negative number",
    "path": "the rest of the path, slashes included",
    "uuid": "a UUID",
}


def protocol_schemas() -> dict[str, Any]:
    codes = "\n".join(f"- `{code.value}`: {why}" for code, why in ERROR_CODES.items())
    return {
        REQUEST_ID: {
            "title": "RequestId",
            "description": "Chosen by the client, echoed exactly in the answer.",
            "oneOf": [
                {"type": "string", "maxLength": MAX_ID_LENGTH},
                {"type": "integer", "minimum": -MAX_SAFE_INTEGER, "maximum": MAX_SAFE_INTEGER},
            ],
        },
        TRACE_PARENT: {
            "title": "TraceParent",
            "description": "W3C Trace Context `traceparent` (version-traceid-parentid-flags): "
            "the span the frame belongs to. A malformed one is ignored, never an error.",
            "type": "string",
            "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
            "examples": ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
        },
        TRACE_STATE: {
            "title": "TraceState",
            "description": "W3C Trace Context `tracestate`, vendor data that goes with "
            "`traceparent`.",
            "type": "string",
            "maxLength": 512,
        },
        ERROR_DATA: {
            "title": "ErrorData",
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": "The protocol's codes, or an application's own "
                    f"(raised as `EventError`):\n{codes}",
                    "examples": [code.value for code in ERROR_CODES],
                },
                "message": {"type": "string", "description": "For a person to read."},
                "details": {
                    "description": "For `validation_error`, a list of `{loc, msg, type}` "
                    "objects (`loc` relative to `data`); else what the application sent, or null."
                },
            },
        },
    }


def refresh_schemas() -> dict[str, Any]:
    """The data of ``wsevents.refresh`` and of its answer."""
    return {
        REFRESH_DATA: {
            "title": "Refresh",
            "description": "When the connection's credentials expire.",
            "type": "object",
            "required": ["expires_at"],
            "properties": {"expires_at": {"type": "number", "description": "UNIX seconds."}},
        },
        REFRESH_ANSWER_DATA: {
            "title": "RefreshAnswer",
            "description": "A fresh token, checked as the handshake's was.",
            "type": "object",
            "required": ["token"],
            "properties": {"token": {"type": "string", "minLength": 1}},
        },
    }


def history_schemas() -> dict[str, Any]:
    return {
        SUBSCRIBED_DATA: {
            "title": "Subscribed",
            "description": "A history topic's position, sent after each subscription to it.",
            "type": "object",
            "required": ["topic", "epoch", "offset", "recovered"],
            "properties": {
                "topic": {"type": "string"},
                "epoch": {
                    "type": "string",
                    "description": "Changes whenever the topic's history was lost.",
                },
                "offset": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "The offset of the topic's last publication (0: none yet).",
                },
                "recovered": {
                    "type": ["boolean", "null"],
                    "description": "true: every publication after the position named in "
                    f"`{RESUME_PARAMETER}` came before this frame; false: the history could "
                    "not give them all (reload the state another way); null: no position "
                    "was named.",
                },
            },
        }
    }


def presence_schemas() -> dict[str, Any]:
    members = {
        "type": "object",
        "additionalProperties": {"type": "object"},
        "description": "Connection id to the info it gave as `presence=`.",
    }
    return {
        PRESENCE_DATA: {
            "title": "PresenceDiff",
            "description": "What changed in a topic's members during one window.",
            "type": "object",
            "required": ["topic", "joined", "left"],
            "properties": {
                "topic": {"type": "string"},
                "joined": {
                    **members,
                    "description": "Who joined, or subscribed again with other info; a "
                    "subscriber's first frame lists every member here, itself included.",
                },
                "left": {**members, "description": "Who left, with the info they had."},
            },
        }
    }


POSITION_KEYS = {
    "topic": {
        "type": "string",
        "description": "On a push through a topic that keeps history: the topic.",
    },
    "epoch": {"type": "string", "description": "With `topic`: the history's epoch."},
    "offset": {
        "type": "integer",
        "minimum": 1,
        "description": "With `topic`: the push's offset, one more than the one before.",
    },
}


def unique_key(name: str, taken: set[str] | KeysView[str]) -> str:
    """A key for ``name`` that is an identifier, not in ``taken``; added to it when it is a set.

    Code generators turn message and operation keys into names: letters,
    digits and ``_``, not starting with a digit, not a keyword.
    """
    key = safe_key(name)
    candidate, n = key, 2
    while candidate in taken:
        candidate, n = f"{key}_{n}", n + 1
    if isinstance(taken, set):
        taken.add(candidate)
    return candidate


def safe_key(name: str) -> str:
    key = KEY.sub("_", name).strip("_") or "event"
    if key[0].isdigit():
        key = f"_{key}"
    return f"{key}_" if key.lower() in RESERVED_WORDS else key


def schema_ref(schema: str) -> dict[str, str]:
    return {"$ref": REF_PREFIX + schema}


def drop_none(mapping: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if value not in (None, [], {})}


def envelope_payload(
    event: str,
    data: dict[str, Any],
    *,
    data_required: bool,
    request_id: str | None,
    title: str,
    push: bool = False,
    ask: bool = False,
    traced: bool = False,
) -> dict[str, Any]:
    """The schema of a whole frame; ``discriminator`` tells generators which one it is.

    ``ask``: a server request or its answer, which carries the request's ``ask``.
    ``traced``: a frame that may carry W3C Trace Context (``traceparent``,
    ``tracestate``): a client's, and a server request.
    """
    properties: dict[str, Any] = {
        "event": {"type": "string", "const": event},
        "data": data,
    }
    if traced:
        properties["traceparent"] = schema_ref(TRACE_PARENT)
        properties["tracestate"] = schema_ref(TRACE_STATE)
    required = ["event", "data"] if data_required else ["event"]
    if ask:
        properties["ask"] = {
            "type": "string",
            "maxLength": MAX_ID_LENGTH,
            "description": "The server request's key; its answer carries it back.",
        }
        required.append("ask")
    if request_id == "required":
        properties["id"] = schema_ref(REQUEST_ID)
        required.append("id")
    elif request_id in ("optional", "nullable"):
        properties["id"] = {"anyOf": [schema_ref(REQUEST_ID), {"type": "null"}]}
        if request_id == "nullable":
            required.append("id")
    envelope = {
        "title": title,
        "type": "object",
        "required": required,
        "properties": properties,
        "discriminator": "event",
    }
    if push:  # a frame with an `id` answers a request: it is never a push
        envelope["not"] = {"required": ["id"]}
    return envelope


def message_object(
    event: str,
    payload: dict[str, Any],
    *,
    title: str,
    summary: str | None,
    description: str | None,
    correlated: bool,
    example: dict[str, Any] | None,
    by_ask: bool = False,
) -> dict[str, Any]:
    correlation = ASK_CORRELATION if by_ask else CORRELATION if correlated else None
    return drop_none(
        {
            "name": event,
            "title": title,
            "summary": summary,
            "description": description,
            "contentType": "application/json",
            "correlationId": correlation,
            "payload": payload,
            "examples": [{"name": "example", "payload": example}] if example else None,
        }
    )


MISSING = object()
# Values to try where a made-up one fails validation (a Decimal wants digits, say).
_CANDIDATES: tuple[Any, ...] = ("1", 1, 1.5, True, "2024-01-01T12:00:00Z", "a", [], {}, None)


def example_data(schema: dict[str, Any], schemas: SchemaSet, model: Any) -> Any:
    """An example of the data, checked by the model; ``MISSING`` where none could be made."""
    value = example_for(schema, schemas.components)
    if model is None:
        return value
    adapter: TypeAdapter[Any] = TypeAdapter(model)
    tried: dict[tuple[Any, ...], int] = {}
    for _ in range(32):
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(error["loc"])
                n = tried.get(loc, 0)
                if n >= len(_CANDIDATES):
                    return MISSING
                tried[loc] = n + 1
                value = replace(value, loc, _CANDIDATES[n])
            continue
        except Exception:
            return MISSING
        return value
    return MISSING


def replace(value: Any, loc: tuple[Any, ...], new: Any) -> Any:
    if not loc:
        return new
    head, rest = loc[0], loc[1:]
    if isinstance(value, dict):
        return {**value, head: replace(value.get(head), rest, new)}
    if isinstance(value, list) and isinstance(head, int) and head < len(value):
        return [*value[:head], replace(value[head], rest, new), *value[head + 1 :]]
    return value  # a loc through a union tag or a missing container: leave it


def example_envelope(
    event: str, data: Any, request_id: str | None, data_required: bool
) -> dict[str, Any] | None:
    if data is MISSING:
        return None
    example: dict[str, Any] = {"event": event}
    if data is not None or data_required:
        example["data"] = data
    if request_id is not None:
        example["id"] = request_id
    return example


def rejects_none(model: Any) -> bool:
    try:
        TypeAdapter(model).validate_python(None)
    except Exception:
        return True
    return False


def error_message(title: str) -> dict[str, Any]:
    """The error frame of a channel: any frame's, correlated by ``id`` (null: none)."""
    example = {
        "event": "error",
        "data": {
            "code": "validation_error",
            "message": "invalid data",
            "details": [{"loc": ["text"], "msg": "Field required", "type": "missing"}],
        },
        "id": "1",
    }
    return message_object(
        "error",
        envelope_payload(
            "error", schema_ref(ERROR_DATA), data_required=True, request_id="nullable", title=title
        ),
        title="error",
        summary="Something went wrong with a frame; `id` is the request's, or null.",
        description=None,
        correlated=True,
        example=example,
    )


def error_answer(title: str) -> dict[str, Any]:
    """A client refusing a server request: an error frame with the request's ``ask``."""
    return message_object(
        "error",
        envelope_payload(
            "error",
            schema_ref(ERROR_DATA),
            data_required=True,
            request_id=None,
            title=title,
            ask=True,
        ),
        title="error (answer)",
        summary="A client refusing a server request, with the request's `ask`: "
        "`unknown_event` where it answers no such request.",
        description=None,
        correlated=False,
        by_ask=True,
        example={
            "event": "error",
            "data": {"code": "unknown_event", "message": "no answerer", "details": None},
            "ask": "q1",
        },
    )


def ws_binding(
    subprotocols: list[str], query_params: Mapping[str, str], *, history: bool
) -> dict[str, Any]:
    """A channel's ``ws`` binding: the subprotocols, and the query parameters it takes."""
    protocols = ", ".join(f"`{name}`" for name in subprotocols)
    binding: dict[str, Any] = {
        "method": "GET",
        "headers": {
            "type": "object",
            "properties": {
                "Sec-WebSocket-Protocol": {
                    "type": "string",
                    "description": f"Offer one of {protocols}: JSON envelopes in text "
                    "frames (`application/json`) or MessagePack maps in binary frames "
                    "(`application/msgpack`). Without one, JSON.",
                }
            },
        },
        "bindingVersion": "0.1.0",
    }
    query: dict[str, Any] = {
        name: {"type": "string", "description": description}
        for name, description in query_params.items()
    }
    query[SESSION_PARAMETER] = {
        "type": "string",
        "pattern": SESSION_PATTERN,
        "description": "The client's session: random, kept for the client's life and "
        "sent on every reconnect; a `once` handler runs at most once per session, "
        "event and request `id`. Malformed: the handshake is refused with 400.",
    }
    if history:
        query |= {
            RESUME_PARAMETER: {
                "type": "string",
                "description": "The positions the client holds, as URL-encoded "
                'JSON: topic to `[epoch, offset]`, e.g. `{"rooms/lobby": ["k3x9", 42]}`. '
                "Subscribing to such a topic then replays what came after the "
                f"position, before `{SUBSCRIBED_EVENT}`. Malformed: the handshake "
                "is refused with 400.",
            }
        }
    if query:
        binding["query"] = {"type": "object", "properties": query}
    return binding
