"""The AsyncAPI 3.0.0 document: a pure function of the registry.

Directions are the server's, as AsyncAPI asks: ``receive`` is a client event,
``send`` a server push. Every message's payload is the whole envelope. Each
channel is built by ``_channels``, from the messages of ``_messages``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Protocol, Union

from .._history import History
from .._members import Presence
from .._registry import Registry
from .._routing import Channel, Hook
from ._schemas import collect_schemas, identifier, set_titles

__all__ = ["build_asyncapi"]

from ._channels import ChannelBuilder
from ._messages import (
    ASYNCAPI_VERSION,
    CLOSE_CODES,
    DEFAULT_SERVER,
    history_schemas,
    presence_schemas,
    protocol_schemas,
    refresh_schemas,
)


class HasRegistry(Protocol):
    """An app the builder can describe: an ``EventApp``."""

    @property
    def registry(self) -> Registry: ...


Described = Union[Registry, HasRegistry]  # noqa: UP007 - a runtime alias on Python 3.10


def registry_of(app: Described) -> Registry:
    """The registry of ``app`` (an ``EventApp``), or ``app`` itself if it is one."""
    return app if isinstance(app, Registry) else app.registry


def build_asyncapi(
    app: Described, *, root_path: str = "", server: str | None = None
) -> dict[str, Any]:
    """Return the AsyncAPI 3.0.0 document describing ``app``'s channels.

    Args:
        app: the registry (an ``EventApp``).
        root_path: the mount prefix, prepended to every channel address.
        server: the server's ``ws://`` or ``wss://`` URL (host and port; a path
            goes in ``root_path``) for the ``servers`` entry where the app names
            none (default ``ws://localhost:8000``, where ``wsevents run`` listens).
    """
    app = registry_of(app)
    schemas = collect_schemas(_models(app.channels))
    rules = app.topics
    history = any(isinstance(rule, History) for rule in rules)
    # Which channel subscribes to which topic is not known here: all of them, then.
    presence = any(isinstance(rule, Presence) and rule.diffs for rule in rules)
    app_refreshes = _refreshes(app.connect_hooks)
    refreshing = {
        channel.name
        for channel in app.channels
        if app_refreshes or _refreshes(channel.connect_hooks)
    }
    protocol = {
        **protocol_schemas(),
        **(history_schemas() if history else {}),
        **(presence_schemas() if presence else {}),
        **(refresh_schemas() if refreshing else {}),
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
    if refreshing or any(channel.asked for channel in app.channels):
        components["correlationIds"]["ask"] = {
            "description": "A client's answer carries the `ask` of the server request it answers.",
            "location": "$message.payload#/ask",
        }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    app_schemes = _security(app.connect_hooks)
    for channel in app.channels:
        prefix = identifier(channel.name) if len(app.channels) > 1 else ""
        builder = ChannelBuilder(
            channel,
            schemas,
            components["messages"],
            operations,
            prefix,
            titles,
            history=history,
            presence=presence,
            refresh=channel.name in refreshing,
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
    # What each close code the server sends means, and whether to reconnect.
    info["x-wsevents-close-codes"] = {str(int(code)): why for code, why in CLOSE_CODES.items()}
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


def _security(hooks: Iterable[Hook]) -> dict[str, Any]:
    """Security schemes that ``on_connect`` hooks describe (``BearerAuth`` does)."""
    schemes: dict[str, Any] = {}
    for hook in hooks:
        describe = getattr(hook.func, "security_schemes", None)
        if callable(describe):
            schemes.update(describe())
    return schemes


def _refreshes(hooks: Iterable[Hook]) -> bool:
    """Whether an ``on_connect`` hook may ask ``wsevents.refresh`` (``BearerAuth`` may)."""
    return any(getattr(hook.func, "asks_refresh", False) for hook in hooks)


def _models(channels: Iterable[Channel]) -> list[tuple[Any, Any]]:
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
        for asked in channel.asked.values():
            if asked.model is not None:
                models.append((asked.model, "serialization"))
            if asked.reply is not None:
                models.append((asked.reply, "validation"))
    return models
