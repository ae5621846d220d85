"""JSON Schemas from pydantic, made fit for AsyncAPI 3.0's Schema Object.

pydantic writes JSON Schema 2020-12 with OpenAPI habits; AsyncAPI's default
schema format is a superset of Draft 07. This module collects the schemas of
every model once (shared models once, two classes of one name twice), names
them with component keys the spec allows, and rewrites what Draft 07 does not
know: ``prefixItems`` becomes the array form of ``items``, the OpenAPI
``discriminator`` object becomes its property name, and ``$ref`` loses its
siblings to an ``allOf``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Iterable
from typing import Any, Literal

from pydantic import TypeAdapter

__all__ = ["REF_PREFIX", "SchemaSet", "collect_schemas", "example_for"]

REF_PREFIX = "#/components/schemas/"
_KEY = re.compile(r"[^A-Za-z0-9.\-_]+")

Mode = Literal["validation", "serialization"]


class SchemaSet:
    """The schemas of a registry: one per (model, mode), and the shared components."""

    def __init__(self, schemas: dict[Hashable, dict[str, Any]], components: dict[str, Any]):
        self._schemas = schemas
        self.components = components

    def schema(self, model: Any, mode: Mode) -> dict[str, Any]:
        """Return the schema of ``model`` in ``mode``: a ``$ref`` or an inline schema."""
        return self._schemas[_input_key(model, mode)]


def _input_key(model: Any, mode: Mode) -> Hashable:
    try:
        hash(model)
    except TypeError:  # an unhashable Annotated metadata: fall back to identity
        return (id(model), mode)
    return (model, mode)


def collect_schemas(models: Iterable[tuple[Any, Mode]]) -> SchemaSet:
    """Build the schemas of every ``(model, mode)`` in one pass, sharing definitions."""
    inputs: list[tuple[Hashable, Mode, TypeAdapter[Any]]] = []
    seen: set[Hashable] = set()
    for model, mode in models:
        key = _input_key(model, mode)
        if key not in seen:
            seen.add(key)
            inputs.append((key, mode, TypeAdapter(model)))
    if not inputs:
        return SchemaSet({}, {})
    by_input, definitions = TypeAdapter.json_schemas(inputs, ref_template=REF_PREFIX + "{model}")
    defs: dict[str, Any] = definitions.get("$defs", {})
    renames = _component_keys(defs)
    components = {renames[name]: _fit(schema, renames) for name, schema in defs.items()}
    schemas = {key: _fit(schema, renames) for (key, _), schema in by_input.items()}
    components, merged = _merge_duplicates(components)
    schemas = {key: _fit(schema, merged) for key, schema in schemas.items()}
    return SchemaSet(schemas, components)


def _merge_duplicates(components: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Keep one key for definitions pydantic wrote twice (a model inside a generic, say)."""
    merged: dict[str, str] = {}
    while True:
        by_body: dict[str, list[str]] = {}
        for key, schema in components.items():
            by_body.setdefault(json.dumps(schema, sort_keys=True), []).append(key)
        renames = {}
        for keys in by_body.values():
            if len(keys) > 1:
                keep = min(keys, key=lambda k: (k.endswith(("-Input", "-Output")), len(k), k))
                renames.update({key: keep for key in keys if key != keep})
        if not renames:
            return components, merged
        for old, new in renames.items():
            merged = {k: (new if v == old else v) for k, v in merged.items()}
            merged[old] = new
        components = {
            key: _fit(schema, renames) for key, schema in components.items() if key not in renames
        }


def _component_keys(defs: dict[str, Any]) -> dict[str, str]:
    """Map pydantic's definition names to keys matching ``^[a-zA-Z0-9.\\-_]+$``, uniquely."""
    renames: dict[str, str] = {}
    taken: set[str] = set()
    for name in defs:
        key = _KEY.sub("_", name).strip("_") or "Schema"
        candidate, n = key, 2
        while candidate in taken:
            candidate, n = f"{key}_{n}", n + 1
        taken.add(candidate)
        renames[name] = candidate
    return renames


def _fit(node: Any, renames: dict[str, str]) -> Any:
    """Rewrite one pydantic schema node (recursively) for AsyncAPI's Schema Object."""
    if isinstance(node, list):
        return [_fit(item, renames) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _fit(value, renames) for key, value in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith(REF_PREFIX):
        out["$ref"] = REF_PREFIX + renames.get(ref[len(REF_PREFIX) :], ref[len(REF_PREFIX) :])
    if "prefixItems" in out:
        prefix = out.pop("prefixItems")
        rest = out.pop("items", None)
        out["items"] = prefix
        out["additionalItems"] = rest if rest is not None else False
    discriminator = out.get("discriminator")
    if isinstance(discriminator, dict):
        out["discriminator"] = discriminator["propertyName"]
    if "$ref" in out and len(out) > 1:
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out


def example_for(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """Make up one value that ``schema`` accepts; the caller validates it."""
    return _example(schema, components, depth=0)


_FORMATS = {
    "date-time": "2024-01-01T12:00:00Z",
    "date": "2024-01-01",
    "time": "12:00:00",
    "duration": "PT1H",
    "uuid": "12345678-1234-5678-1234-567812345678",
    "email": "ann@example.com",
    "uri": "https://example.com/",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
}


def _example(schema: Any, components: dict[str, Any], depth: int) -> Any:
    if not isinstance(schema, dict) or depth > 8:
        return None
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("examples"):
        return schema["examples"][0]
    if "enum" in schema:
        return schema["enum"][0]
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _example(components.get(ref[len(REF_PREFIX) :]), components, depth + 1)
    for key in ("allOf", "anyOf", "oneOf"):
        options = schema.get(key)
        if options:
            choices = [o for o in options if o.get("type") != "null"] or options
            return _example(choices[0], components, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return {
            name: _example(value, components, depth + 1)
            for name, value in schema.get("properties", {}).items()
        }
    if kind == "array":
        items = schema.get("items", {})
        if isinstance(items, list):
            return [_example(item, components, depth + 1) for item in items]
        return [_example(items, components, depth + 1)] * max(1, schema.get("minItems", 1))
    if kind == "string":
        text = _FORMATS.get(schema.get("format", ""), "string")
        return text.ljust(schema.get("minLength", 0), "x")[: schema.get("maxLength", len(text))]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
        high = schema.get("maximum", schema.get("exclusiveMaximum", low + 2) - 1)
        value = max(low, min(1, high))
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    return None
