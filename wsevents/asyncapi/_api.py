"""What a typed client needs of an app, read from its AsyncAPI document.

Both generators (TypeScript and Python) read this one description, and it is
read from the document rather than from the registry, so that a typed client
and the document say the same thing: the same schemas under the same names.
Only the path parameters' convertors come from the registry (the document
describes them in words).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._build import Described, build_asyncapi, registry_of
from ._messages import ERROR_CODES
from ._schemas import REF_PREFIX, identifier

__all__ = ["Api", "Ask", "ChannelApi", "Push", "Request", "constraints", "describe"]

# The JSON Schema keywords that constrain one value, in the order the clients state them.
CONSTRAINTS = (
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
)


def constraints(schema: Any) -> dict[str, Any]:
    """What ``schema`` requires of its value beyond its type: ``{"minimum": 1}``."""
    if not isinstance(schema, dict):
        return {}
    return {key: schema[key] for key in CONSTRAINTS if key in schema}


@dataclass(frozen=True)
class Request:
    """A client event: its data, whether it may be left out, and the reply's data."""

    event: str
    key: str  #: the message key: an identifier, unique in the channel
    data: dict[str, Any]
    data_required: bool
    reply: dict[str, Any]  #: ``{"type": "null"}`` where the handler declares no reply
    summary: str | None
    errors: dict[str, str] = field(default_factory=dict)  #: the handler's own codes


@dataclass(frozen=True)
class Push:
    """A server event and its data."""

    event: str
    key: str
    data: dict[str, Any]
    summary: str | None


@dataclass(frozen=True)
class Ask:
    """A server request (``channel.asks``): the data the server sends, the answer it takes."""

    event: str
    key: str
    data: dict[str, Any]
    answer: dict[str, Any]
    summary: str | None


@dataclass
class ChannelApi:
    """One channel: where it is, its parameters, its events each way, its error codes."""

    name: str
    type_name: str  #: PascalCase, for the generated names
    address: str
    title: str | None
    params: dict[str, str]  #: name to convertor (``str``, ``int``, ``float``, ``uuid``, ``path``)
    requests: list[Request] = field(default_factory=list)
    pushes: list[Push] = field(default_factory=list)  #: ``error`` included
    asks: list[Ask] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  #: code to meaning


@dataclass
class Api:
    """An app: its name, the schemas every channel shares, and its channels."""

    title: str
    version: str
    schemas: dict[str, Any]  #: component key to schema; each has a unique ``title``
    channels: list[ChannelApi]

    def type_name(self, ref: str) -> str:
        """The name of the type a ``$ref`` to a component schema names: its title."""
        return str(self.schemas[ref[len(REF_PREFIX) :]]["title"])


def describe(app: Described, *, root_path: str = "") -> Api:
    """Describe ``app`` for the client generators."""
    app = registry_of(app)
    document = build_asyncapi(app, root_path=root_path)
    messages = document["components"]["messages"]
    kinds = {channel.name: channel.param_kinds for channel in app.channels}
    own = {
        (channel.name, handler.event): dict(handler.errors)
        for channel in app.channels
        for handler in channel.handlers.values()
    }
    channels: dict[str, ChannelApi] = {}
    for name, channel in document["channels"].items():
        channels[name] = ChannelApi(
            name=name,
            type_name=identifier(name, default="Channel"),
            address=channel["address"],
            title=channel.get("title"),
            params=dict(kinds.get(name, {})),
            errors={code.value: why for code, why in ERROR_CODES.items()},
        )

    def payload(ref: str) -> tuple[str, dict[str, Any]]:
        channel_name, key = ref.removeprefix("#/channels/").split("/messages/")
        component = document["channels"][channel_name]["messages"][key]["$ref"]
        return key, messages[component.rsplit("/", 1)[1]]["payload"]

    for operation in document["operations"].values():
        api = channels[operation["channel"]["$ref"].removeprefix("#/channels/")]
        key, body = payload(operation["messages"][0]["$ref"])
        event = body["properties"]["event"]["const"]
        summary = operation.get("summary")
        if operation["action"] == "send" and "reply" not in operation:
            api.pushes.append(Push(event, key, body["properties"]["data"], summary))
            continue
        _, reply = payload(operation["reply"]["messages"][0]["$ref"])
        if operation["action"] == "send":  # a server request, answered by the client
            if event.startswith("wsevents."):
                continue  # the protocol's own (wsevents.refresh): the clients answer it (token=)
            data, answer = body["properties"]["data"], reply["properties"]["data"]
            api.asks.append(Ask(event, key, data, answer, summary))
            continue
        errors = own.get((api.name, event), {})
        api.errors.update(errors)
        api.requests.append(
            Request(
                event,
                key,
                body["properties"]["data"],
                "data" in body["required"],
                reply["properties"]["data"],
                summary,
                errors,
            )
        )
    return Api(
        title=document["info"]["title"],
        version=document["info"]["version"],
        schemas=document["components"]["schemas"],
        channels=list(channels.values()),
    )
