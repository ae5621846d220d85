"""The AsyncAPI 3.0.0 document: a pure function of the registry.

Directions are the server's, as AsyncAPI asks: ``receive`` is a client event,
``send`` a server push. Every message's payload is the whole envelope.

Over 300 lines: one pure function of the registry, from channels to messages,
operations and schemas.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import KeysView
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from .._envelope import MAX_ID_LENGTH, MAX_SAFE_INTEGER
from .._history import RESUME_PARAMETER, SUBSCRIBED_EVENT, History
from .._presence import PRESENCE_EVENT, Presence
from .._routing import Channel, Emit, Handler, Hook
from ..exceptions import ErrorCode
from ._schemas import REF_PREFIX, SchemaSet, collect_schemas, example_for, identifier, set_titles

__all__ = ["build_asyncapi"]

ASYNCAPI_VERSION = "3.0.0"
REQUEST_ID = "wsevents.RequestId"
ERROR_DATA = "wsevents.ErrorData"
SUBSCRIBED_DATA = "wsevents.Subscribed"
PRESENCE_DATA = "wsevents.PresenceDiff"
CORRELATION = {"$ref": "#/components/correlationIds/requestId"}
_KEY = re.compile(r"[^A-Za-z0-9_]+")
_JAVASCRIPT_WORDS = frozenset(
    {"case", "catch", "class", "const", "debugger", "default", "delete", "do", "enum"}
    | {"export", "extends", "function", "implements", "instanceof", "interface", "let"}
    | {"new", "null", "package", "private", "protected", "public", "static", "super"}
    | {"switch", "this", "throw", "typeof", "var", "void"}
)
# Message and operation keys become names in generated code: none of these words.
_RESERVED_WORDS = frozenset(word.lower() for word in keyword.kwlist) | _JAVASCRIPT_WORDS

DEFAULT_SERVER = "ws://localhost:8000"

ERROR_CODES = {
    ErrorCode.BAD_FRAME: "the frame is not JSON (text) or MessagePack (binary)",
    ErrorCode.BAD_ENVELOPE: "not an object, no or bad `event`, a bad `id`",
    ErrorCode.UNKNOWN_EVENT: "no handler for this event on this channel",
    ErrorCode.VALIDATION_ERROR: "`data` does not match the event's model; "
    "`details` lists pydantic's `loc`, `msg` and `type`",
    ErrorCode.RATE_LIMITED: "too many events from this connection",
    ErrorCode.INTERNAL_ERROR: "the handler failed; no exception text is sent",
}
PARAMETER_KINDS = {
    "str": "one path segment",
    "int": "a non-negative integer",
    "float": "a non-negative number",
    "path": "the rest of the path, slashes included",
    "uuid": "a UUID",
}


class Registry(Protocol):
    """What the builder reads of an ``EventApp``."""

    channels: list[Channel]

    @property
    def connect_hooks(self) -> list[Hook]: ...

    title: str
    version: str
    description: str | None
    servers: dict[str, Any] | None

    @property
    def subprotocols(self) -> list[str]: ...


def build_asyncapi(
    app: Registry, *, root_path: str = "", server: str | None = None
) -> dict[str, Any]:
    """Return the AsyncAPI 3.0.0 document describing ``app``'s channels.

    Args:
        app: the registry (an ``EventApp``).
        root_path: the mount prefix, prepended to every channel address.
        server: the server's ``ws://`` or ``wss://`` URL (host and port; a path
            goes in ``root_path``) for the ``servers`` entry where the app names
            none (default ``ws://localhost:8000``, where ``wsevents run`` listens).
    """
    schemas = collect_schemas(_models(app.channels))
    rules = getattr(app, "topics", ())
    history = any(isinstance(rule, History) for rule in rules)
    # Which channel subscribes to which topic is not known here: all of them, then.
    presence = any(isinstance(rule, Presence) and rule.diffs for rule in rules)
    protocol = {
        **_protocol_schemas(),
        **(_history_schemas() if history else {}),
        **(_presence_schemas() if presence else {}),
    }
    every_schema = {**schemas.components, **protocol}
    titles = set_titles(every_schema, keep=protocol)
    components: dict[str, Any] = {
        "schemas": every_schema,
        "messages": {},
        "correlationIds": {
            "requestId": {
                "description": "An answer carries the `id` of the request it answers.",
                "location": "$message.payload#/id",
            }
        },
    }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    app_schemes = _security(app.connect_hooks)
    for channel in app.channels:
        prefix = identifier(channel.name) if len(app.channels) > 1 else ""
        builder = _ChannelBuilder(
            channel,
            schemas,
            components["messages"],
            operations,
            prefix,
            titles,
            history=history,
            presence=presence,
        )
        channels[channel.name] = builder.channel(root_path, app.subprotocols)
        schemes = {**app_schemes, **_security(channel.connect_hooks)}
        if schemes:
            components.setdefault("securitySchemes", {}).update(schemes)
            security = [{"$ref": f"#/components/securitySchemes/{key}"} for key in schemes]
            for key in builder.operation_keys:
                operation = operations[key]
                if operation["action"] == "receive":
                    operation["security"] = security
    info: dict[str, Any] = {"title": app.title, "version": app.version}
    if app.description:
        info["description"] = app.description
    document: dict[str, Any] = {"asyncapi": ASYNCAPI_VERSION, "info": info}
    document["servers"] = app.servers or {"default": server_object(server or DEFAULT_SERVER)}
    document.update(
        {
            "defaultContentType": "application/json",
            "channels": channels,
            "operations": operations,
            "components": components,
        }
    )
    return document


def server_object(url: str) -> dict[str, Any]:
    """The AsyncAPI Server Object of a ``ws://host:port`` or ``wss://host:port`` URL.

    Raises:
        ValueError: not a ``ws://`` or ``wss://`` URL with a host.
    """
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    if scheme not in ("ws", "wss") or not host or not _HOST.fullmatch(host):
        raise ValueError(f"expected a ws:// or wss:// URL with a host, got {url!r}")
    server: dict[str, Any] = {"host": host, "protocol": scheme}
    if path.strip("/"):
        server["pathname"] = "/" + path.strip("/")
    return server


_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def _security(hooks: list[Hook]) -> dict[str, Any]:
    """Security schemes that ``on_connect`` hooks describe (``BearerAuth`` does)."""
    schemes: dict[str, Any] = {}
    for hook in hooks:
        describe = getattr(hook.func, "security_schemes", None)
        if callable(describe):
            schemes.update(describe())
    return schemes


def _models(channels: list[Channel]) -> list[tuple[Any, Any]]:
    models: list[tuple[Any, Any]] = []
    for channel in channels:
        for handler in channel.handlers.values():
            if handler.model is not None:
                models.append((handler.model, "validation"))
            if handler.reply is not None:
                models.append((handler.reply, "serialization"))
        for emit in channel.emitted.values():
            if emit.model is not None:
                models.append((emit.model, "serialization"))
    return models


def _protocol_schemas() -> dict[str, Any]:
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


def _history_schemas() -> dict[str, Any]:
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


def _presence_schemas() -> dict[str, Any]:
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


_POSITION_KEYS = {
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


def _key(name: str, taken: set[str] | KeysView[str]) -> str:
    """A key for ``name`` that is an identifier, not in ``taken``; added to it when it is a set.

    Code generators turn message and operation keys into names: letters,
    digits and ``_``, not starting with a digit, not a keyword.
    """
    key = _safe_key(name)
    candidate, n = key, 2
    while candidate in taken:
        candidate, n = f"{key}_{n}", n + 1
    if isinstance(taken, set):
        taken.add(candidate)
    return candidate


def _safe_key(name: str) -> str:
    key = _KEY.sub("_", name).strip("_") or "event"
    if key[0].isdigit():
        key = f"_{key}"
    return f"{key}_" if key.lower() in _RESERVED_WORDS else key


def _ref(schema: str) -> dict[str, str]:
    return {"$ref": REF_PREFIX + schema}


def _drop_none(mapping: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if value not in (None, [], {})}


class _ChannelBuilder:
    def __init__(
        self,
        channel: Channel,
        schemas: SchemaSet,
        messages: dict[str, Any],
        operations: dict[str, Any],
        prefix: str,
        titles: set[str],
        *,
        history: bool = False,
        presence: bool = False,
    ) -> None:
        self.ch = channel
        self.history = history  # the app has topics that keep history
        self.prefix = prefix  # for payload titles: code generators name types after them
        self.titles = titles  # every title in the document: each names one type
        self.schemas = schemas
        self.components = messages
        self.messages: dict[str, Any] = {}
        # Document-wide, like components/messages: keys built from a channel name and
        # an event can meet (channel "a.b", event "c"; channel "a", event "b.c").
        self.operations = operations
        self.operation_keys: list[str] = []
        self._taken: set[str] = {"error"}
        self._ref = f"#/channels/{channel.name}"
        self._add_message("error", self._error_message())
        for handler in channel.handlers.values():
            self._add_handler(handler)
        for emit in channel.emitted.values():
            self._add_emit(emit)
        self._add_operation("send", "error", "error", summary="An error frame.", description=None)
        if history:
            self._add_subscribed()
        if presence:
            self._add_presence()

    def channel(self, root_path: str, subprotocols: list[str]) -> dict[str, Any]:
        ch = self.ch
        address = root_path.rstrip("/") + ch.path_format
        parameters = {
            name: {
                "description": f"Path parameter `{name}`: "
                f"{PARAMETER_KINDS.get(kind, f'a value of the {kind!r} convertor')}."
            }
            for name, kind in ch.param_kinds.items()
        }
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
            for name, description in ch.query.items()
        }
        if self.history:
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
        return _drop_none(
            {
                "address": address,
                "title": ch.title,
                "description": ch.description,
                "parameters": parameters,
                "messages": self.messages,
                "tags": [{"name": tag} for tag in ch.tags],
                "bindings": {"ws": binding},
            }
        )

    def _add_message(self, key: str, message: dict[str, Any]) -> None:
        component = _key(f"{self.ch.name}_{key}", self.components.keys())
        self.components[component] = message
        self.messages[key] = {"$ref": f"#/components/messages/{component}"}

    def _add_operation(
        self,
        action: str,
        key: str,
        message_key: str,
        *,
        summary: str | None,
        description: str | None,
        tags: tuple[str, ...] = (),
        reply_key: str | None = None,
        error_key: str = "error",
    ) -> None:
        operation: dict[str, Any] = {
            "action": action,
            "channel": {"$ref": self._ref},
            "summary": summary,
            "description": description,
            "tags": [{"name": tag} for tag in tags],
            "messages": [{"$ref": f"{self._ref}/messages/{message_key}"}],
        }
        if reply_key is not None:
            operation["reply"] = {
                "channel": {"$ref": self._ref},
                "messages": [
                    {"$ref": f"{self._ref}/messages/{reply_key}"},
                    {"$ref": f"{self._ref}/messages/{error_key}"},
                ],
            }
        operation_key = _key(f"{self.ch.name}_{action}_{key}", self.operations.keys())
        self.operations[operation_key] = _drop_none(operation)
        self.operation_keys.append(operation_key)

    def _add_handler(self, handler: Handler) -> None:
        key = _key(handler.event, self._taken)
        reply_key = _key(f"{key}_reply", self._taken)
        if handler.model is None:
            data: dict[str, Any] = {"description": "Any JSON value; not validated."}
            data_required = False
        else:
            data = self.schemas.schema(handler.model, "validation")
            data_required = _rejects_none(handler.model)
        request = _envelope(
            handler.event,
            data,
            data_required=data_required,
            request_id="optional",
            title=self._title(key, "Request"),
        )
        example = _example_data(data, self.schemas, handler.model)
        self._add_message(
            key,
            _message(
                handler.event,
                request,
                title=handler.event,
                summary=handler.summary,
                description=handler.description,
                correlated=True,
                example=_example_envelope(handler.event, example, "1", data_required),
            ),
        )
        if handler.reply is None:
            reply_data: dict[str, Any] = {"type": "null"}
            reply_example: Any = None
        else:
            reply_data = self.schemas.schema(handler.reply, "serialization")
            reply_example = _example_data(reply_data, self.schemas, handler.reply)
        self._add_message(
            reply_key,
            _message(
                handler.event,
                _envelope(
                    handler.event,
                    reply_data,
                    data_required=True,
                    request_id="required",
                    title=self._title(key, "Reply"),
                ),
                title=f"{handler.event} (reply)",
                summary=f"The answer to `{handler.event}`, with the request's `id`.",
                description=None,
                correlated=True,
                example=_example_envelope(handler.event, reply_example, "1", True),
            ),
        )
        error_key = "error"
        if handler.errors:
            error_key = _key(f"{key}_error", self._taken)
            self._add_message(error_key, self._own_error_message(handler, key))
        self._add_operation(
            "receive",
            key,
            key,
            summary=handler.summary,
            description=handler.description,
            tags=handler.tags,
            reply_key=reply_key,
            error_key=error_key,
        )

    def _own_error_message(self, handler: Handler, key: str) -> dict[str, Any]:
        """The error frame answering ``handler``'s event: the protocol's codes and its own."""
        own = dict(handler.errors)
        codes = [*(code.value for code in ERROR_CODES), *own]
        listed = "\n".join(f"- `{code}`: {why}" for code, why in own.items())
        data = {
            "title": self._title(key, "ErrorData"),
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {
                    "type": "string",
                    "enum": codes,
                    "description": "The protocol's codes (`ErrorData`), "
                    f"or the handler's own:\n{listed}",
                },
                "message": {"type": "string", "description": "For a person to read."},
                "details": {"description": "What the handler sent with the error, or null."},
            },
        }
        code = next(iter(own))
        return _message(
            "error",
            _envelope(
                "error",
                data,
                data_required=True,
                request_id="required",
                title=self._title(key, "Error"),
            ),
            title=f"{handler.event} (error)",
            summary=f"An error answering `{handler.event}`, with the request's `id`.",
            description=None,
            correlated=True,
            example={
                "event": "error",
                "data": {"code": code, "message": own[code], "details": None},
                "id": "1",
            },
        )

    def _add_emit(self, emit: Emit) -> None:
        key = _safe_key(emit.event)
        key = _key(f"{key}_push" if key in self._taken else key, self._taken)
        if emit.model is None:
            data: dict[str, Any] = {"description": "Any JSON value."}
        else:
            data = self.schemas.schema(emit.model, "serialization")
        example = _example_data(data, self.schemas, emit.model)
        envelope = _envelope(
            emit.event,
            data,
            data_required=True,
            request_id=None,
            title=self._title(_safe_key(emit.event), "Push"),
            push=True,
        )
        if self.history:
            envelope["properties"].update(_POSITION_KEYS)
            envelope["dependentRequired"] = {"topic": ["epoch", "offset"]}
        self._add_message(
            key,
            _message(
                emit.event,
                envelope,
                title=emit.event,
                summary=emit.summary,
                description=emit.description,
                correlated=False,
                example=_example_envelope(emit.event, example, None, True),
            ),
        )
        self._add_operation("send", key, key, summary=emit.summary, description=emit.description)

    def _add_subscribed(self) -> None:
        self._add_protocol_push(
            SUBSCRIBED_EVENT,
            SUBSCRIBED_DATA,
            summary="The position of a history topic, after each subscription to it.",
            description="Sent after what was replayed and before anything live; "
            "sent again with `recovered: false` when the topic's history is lost.",
            example={"topic": "rooms/lobby", "epoch": "k3x9Qa1z", "offset": 42, "recovered": True},
        )

    def _add_presence(self) -> None:
        self._add_protocol_push(
            PRESENCE_EVENT,
            PRESENCE_DATA,
            summary="Who joined and who left a topic with presence, once per window.",
            description="Sent to the subscribers of a topic that matches a `Presence` "
            "rule: first every member, then at the end of each window that changed "
            "something, the net change (who joined and left within one window is in "
            "neither).",
            example={
                "topic": "rooms/lobby",
                "joined": {"a1b2c3d4-7": {"user": "ann"}},
                "left": {"a1b2c3d4-3": {"user": "bob"}},
            },
        )

    def _add_protocol_push(
        self, event: str, data: str, *, summary: str, description: str, example: Any
    ) -> None:
        """A push of the protocol's own (``wsevents.*``), its data the schema ``data``."""
        key = _key(event, self._taken)
        envelope = _envelope(
            event,
            _ref(data),
            data_required=True,
            request_id=None,
            title=self._title(key, "Push"),
            push=True,
        )
        self._add_message(
            key,
            _message(
                event,
                envelope,
                title=event,
                summary=summary,
                description=description,
                correlated=False,
                example={"event": event, "data": example},
            ),
        )
        self._add_operation("send", key, key, summary=summary, description=None)

    def _title(self, key: str, kind: str) -> str:
        """A payload title no other schema has: code generators name the type after it."""
        title = f"{self.prefix}{identifier(key)}{kind}"
        candidate, n = title, 2
        while candidate in self.titles:
            candidate, n = f"{title}{n}", n + 1
        self.titles.add(candidate)
        return candidate

    def _error_message(self) -> dict[str, Any]:
        example = {
            "event": "error",
            "data": {
                "code": "validation_error",
                "message": "invalid data",
                "details": [{"loc": ["text"], "msg": "Field required", "type": "missing"}],
            },
            "id": "1",
        }
        return _message(
            "error",
            _envelope(
                "error",
                _ref(ERROR_DATA),
                data_required=True,
                request_id="nullable",
                title=self._title("error", "Frame"),
            ),
            title="error",
            summary="Something went wrong with a frame; `id` is the request's, or null.",
            description=None,
            correlated=True,
            example=example,
        )


def _envelope(
    event: str,
    data: dict[str, Any],
    *,
    data_required: bool,
    request_id: str | None,
    title: str,
    push: bool = False,
) -> dict[str, Any]:
    """The schema of a whole frame; ``discriminator`` tells generators which one it is."""
    properties: dict[str, Any] = {
        "event": {"type": "string", "const": event},
        "data": data,
    }
    required = ["event", "data"] if data_required else ["event"]
    if request_id == "required":
        properties["id"] = _ref(REQUEST_ID)
        required.append("id")
    elif request_id in ("optional", "nullable"):
        properties["id"] = {"anyOf": [_ref(REQUEST_ID), {"type": "null"}]}
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


def _message(
    event: str,
    payload: dict[str, Any],
    *,
    title: str,
    summary: str | None,
    description: str | None,
    correlated: bool,
    example: dict[str, Any] | None,
) -> dict[str, Any]:
    return _drop_none(
        {
            "name": event,
            "title": title,
            "summary": summary,
            "description": description,
            "contentType": "application/json",
            "correlationId": CORRELATION if correlated else None,
            "payload": payload,
            "examples": [{"name": "example", "payload": example}] if example else None,
        }
    )


_MISSING = object()
# Values to try where a made-up one fails validation (a Decimal wants digits, say).
_CANDIDATES: tuple[Any, ...] = ("1", 1, 1.5, True, "2024-01-01T12:00:00Z", "a", [], {}, None)


def _example_data(schema: dict[str, Any], schemas: SchemaSet, model: Any) -> Any:
    """An example of the data, checked by the model; ``_MISSING`` where none could be made."""
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
                    return _MISSING
                tried[loc] = n + 1
                value = _replace(value, loc, _CANDIDATES[n])
            continue
        except Exception:
            return _MISSING
        return value
    return _MISSING


def _replace(value: Any, loc: tuple[Any, ...], new: Any) -> Any:
    if not loc:
        return new
    head, rest = loc[0], loc[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value.get(head), rest, new)}
    if isinstance(value, list) and isinstance(head, int) and head < len(value):
        return [*value[:head], _replace(value[head], rest, new), *value[head + 1 :]]
    return value  # a loc through a union tag or a missing container: leave it


def _example_envelope(
    event: str, data: Any, request_id: str | None, data_required: bool
) -> dict[str, Any] | None:
    if data is _MISSING:
        return None
    example: dict[str, Any] = {"event": event}
    if data is not None or data_required:
        example["data"] = data
    if request_id is not None:
        example["id"] = request_id
    return example


def _rejects_none(model: Any) -> bool:
    try:
        TypeAdapter(model).validate_python(None)
    except Exception:
        return True
    return False
