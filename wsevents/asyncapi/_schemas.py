"""JSON Schemas from pydantic, made fit for AsyncAPI 3.0's Schema Object.

pydantic writes JSON Schema 2020-12 with OpenAPI habits; AsyncAPI's default
schema format is a superset of Draft 07. This module collects the schemas of
every model once (shared models once, two classes of one name twice), names
them with component keys the spec allows, and rewrites what Draft 07 does not
know: ``prefixItems`` becomes the array form of ``items``, ``const`` a
one-value ``enum`` (the same constraint, which code generators read right), the OpenAPI
``discriminator`` object becomes its property name, and ``$ref`` loses its
siblings to an ``allOf``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Iterable
from typing import Any, Literal

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

__all__ = ["REF_PREFIX", "SchemaSet", "collect_schemas", "example_for", "identifier", "set_titles"]

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
    by_input, definitions = TypeAdapter.json_schemas(
        inputs, ref_template=REF_PREFIX + "{model}", schema_generator=_WithoutFieldTitles
    )
    defs: dict[str, Any] = definitions.get("$defs", {})
    renames = _component_keys(defs)
    components = {renames[name]: _fit(schema, renames) for name, schema in defs.items()}
    schemas = {key: _fit(schema, renames) for (key, _), schema in by_input.items()}
    components, merged = _merge_duplicates(components)
    schemas = {key: _fit(schema, merged) for key, schema in schemas.items()}
    return SchemaSet(schemas, components)


class _WithoutFieldTitles(GenerateJsonSchema):
    """pydantic's generator without the titles it makes up from field names.

    Every ``kind: Literal[...]`` would be titled ``Kind``, and code generators
    name a type after a title: two such fields became one enum. A title the
    model gives with ``Field(title=...)`` stays.
    """

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def identifier(text: str, *, default: str = "Model") -> str:
    """``text`` in PascalCase, ASCII letters and digits only, not starting with a digit."""
    name = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", text))
    if not name:
        return default
    return f"{default}{name}" if name[0].isdigit() else name


_QUALIFIED = re.compile(r"(?P<path>.*?)(?:-(?P<mode>Input|Output))?(?:__(?P<n>\d+))?")


def set_titles(components: dict[str, Any], *, keep: Iterable[str] = ()) -> set[str]:
    """Give every schema in ``components`` a ``title`` no other one has, a valid identifier.

    Code generators name types after titles, and pydantic titles two classes
    named ``Item`` in two modules, and a model's ``-Input`` and ``-Output``
    variants, alike. Such titles are qualified: by the module's last part
    where the modules differ, by ``Input``/``Output`` where the modes do, then
    by a number. ``keep`` are the keys whose titles are already right (the
    protocol's own); the titles given are returned.
    """
    kept = set(keep)
    taken = {identifier(str(components[key].get("title", key))) for key in kept}
    groups: dict[str, list[str]] = {}
    for key, schema in components.items():
        if key not in kept:
            groups.setdefault(identifier(str(schema.get("title") or key)), []).append(key)
    for base, keys in groups.items():
        parts = {key: _qualifiers(key) for key in keys}
        modules = {module for module, _ in parts.values()}
        modes = {mode for _, mode in parts.values()}
        for key in keys:
            module, mode = parts[key]
            title = base
            if len(keys) > 1:
                title = (identifier(module, default="") if len(modules) > 1 else "") + base
                title += mode if len(modes) > 1 else ""
            candidate, n = title, 2
            while candidate in taken:
                candidate, n = f"{title}{n}", n + 1
            taken.add(candidate)
            components[key] = {**components[key], "title": candidate}
    return taken


def _qualifiers(key: str) -> tuple[str, str]:
    """The last module part and the mode (``Input``, ``Output`` or "") of a component key."""
    match = _QUALIFIED.fullmatch(key)
    assert match is not None  # every string matches
    path = match["path"].split("__")
    return (path[-2] if len(path) > 1 else ""), match["mode"] or ""


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
    if "const" in out and "enum" not in out:
        # The same constraint; Modelina turns a discriminated union's `const`
        # tags into enum members that a union type cannot name.
        out["enum"] = [out.pop("const")]
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
