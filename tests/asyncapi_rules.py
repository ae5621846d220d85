"""The AsyncAPI 3.0 rules the official parser does not check, checked in Python.

The spec's MUST rules about parameters, references, component keys,
correlation ids, examples and ws bindings; `../shared` has a fuller checker,
but the project must not depend on it.
"""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft7Validator

KEY = re.compile(r"^[a-zA-Z0-9.\-_]+$")
WS_BINDING = {"method", "query", "headers", "bindingVersion"}


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"not a local $ref: {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise AssertionError(f"$ref does not resolve: {ref}")
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


def problems(document: dict[str, Any]) -> list[str]:
    """Return every rule the document breaks, as readable lines (empty when clean)."""
    out: list[str] = []
    for ref in refs(document):
        try:
            resolve(document, ref)
        except AssertionError as exc:
            out.append(str(exc))
    for section, entries in document.get("components", {}).items():
        out += [f"components/{section} key {key!r}" for key in entries if not KEY.match(key)]
    for key, channel in document.get("channels", {}).items():
        if not KEY.match(key):
            out.append(f"channel key {key!r}")
        named = set(re.findall(r"{([^}]+)}", channel["address"]))
        declared = set(channel.get("parameters", {}))
        if named != declared:
            out.append(f"channel {key}: address names {named}, parameters declare {declared}")
        out += [
            f"channel {key}: message key {m!r}" for m in channel["messages"] if not KEY.match(m)
        ]
        extra = set(channel.get("bindings", {}).get("ws", {})) - WS_BINDING
        if extra:
            out.append(f"channel {key}: ws binding has {extra}")
    for key, operation in document.get("operations", {}).items():
        channel = operation["channel"]["$ref"]
        for message in operation["messages"]:
            if not message["$ref"].startswith(channel + "/messages/"):
                out.append(f"operation {key}: message {message['$ref']} is not its channel's")
        reply = operation.get("reply")
        if reply:
            for message in reply["messages"]:
                if not message["$ref"].startswith(reply["channel"]["$ref"] + "/messages/"):
                    out.append(f"operation {key}: reply {message['$ref']} is not its channel's")
    components = document.get("components", {})
    for key, message in components.get("messages", {}).items():
        payload = message["payload"]
        correlation = message.get("correlationId")
        if correlation:
            location = resolve(document, correlation["$ref"])["location"]
            field = location.split("#/", 1)[1]
            if field not in payload.get("properties", {}):
                out.append(f"message {key}: correlationId {location} is not a payload property")
        validator = Draft7Validator({**payload, "components": components})
        for example in message.get("examples", ()):
            for error in validator.iter_errors(example["payload"]):
                out.append(f"message {key}: example does not validate: {error.message}")
    return out
