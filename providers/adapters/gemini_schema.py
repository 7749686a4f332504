"""JSON Schema (as OpenAI-style callers write it) to the Schema object Gemini accepts.

Gemini's Schema (function `parameters`, `responseSchema`) is a subset of OpenAPI 3.0: type
(upper-case STRING, NUMBER, INTEGER, BOOLEAN, ARRAY, OBJECT, NULL), format, title,
description, nullable, enum (strings), items, properties, required, propertyOrdering,
min/maxItems, min/maxLength, min/maxProperties, minimum/maximum, pattern, anyOf.

Translated:
- local `$ref` (a JSON pointer into the schema: `#/$defs/X`, `#/definitions/X`, ...) is
  inlined, its sibling keywords (a description, say) laid over it; a recursive one is refused;
- `type: [X, "null"]`, an anyOf/oneOf member `{"type": "null"}` and a null in `enum` become
  `nullable: true`; several types become an anyOf of one schema per type; oneOf becomes
  anyOf and a one-schema allOf is merged (both only loosen: RANA validates answers itself);
- `const` becomes a one-value enum; a numeric enum becomes Gemini's `format: "enum"` with
  the values as strings; a boolean enum is dropped (the type stays BOOLEAN);
- `exclusiveMinimum` / `exclusiveMaximum` (numbers) become minimum / maximum;
- a missing type is read from the keywords (properties: OBJECT, items: ARRAY, enum values);
- `required` keeps only names that are in `properties`; `propertyOrdering` (response
  schemas) keeps the caller's order of properties.

Dropped silently, since dropping only loosens or changes nothing: annotations ($schema, $id,
$comment, $anchor, default, examples, deprecated, readOnly, writeOnly, content*),
discriminator, uniqueItems, `additionalProperties` / `unevaluatedProperties` true or false,
and keywords JSON Schema itself does not know (validators ignore them too).

Refused (SchemaRefused, whose reason names the keyword and where it is): a keyword with no
equivalent (patternProperties, if/then/else, not, dependentSchemas, prefixItems, contains,
multipleOf...), `additionalProperties` given as a schema, a recursive or non-local $ref, a
multi-schema allOf, an enum mixing value types, and a nested object without properties or a
schema without any type (Gemini can express neither "any object" nor "any value").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
    "null": "NULL",
}
PASSED = ("title", "description", "pattern", "minItems", "maxItems", "minLength", "maxLength")
PASSED += ("minProperties", "maxProperties", "minimum", "maximum", "format", "nullable")
REFUSED = {
    "patternProperties",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "if",
    "then",
    "else",
    "not",
    "prefixItems",
    "additionalItems",
    "unevaluatedItems",
    "contains",
    "minContains",
    "maxContains",
    "multipleOf",
    "contentSchema",
    "$dynamicRef",
    "$recursiveRef",
}
# Keywords that apply to one type only, for splitting `type: [A, B]` into an anyOf.
FOR_TYPE = {
    "STRING": {"format", "pattern", "minLength", "maxLength", "enum", "const"},
    "NUMBER": {"format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum", "const"},
    "ARRAY": {"items", "minItems", "maxItems", "prefixItems", "contains", "uniqueItems"},
    "OBJECT": {"properties", "required", "additionalProperties", "patternProperties"},
}
FOR_TYPE["INTEGER"] = FOR_TYPE["NUMBER"]
FOR_TYPE["OBJECT"] |= {"minProperties", "maxProperties", "propertyNames", "unevaluatedProperties"}
STRUCTURAL = set().union(*FOR_TYPE.values()) | {"type", "anyOf", "oneOf", "allOf", "$ref"}
MAX_NODES = 5000  # inlining $refs must not blow a schema up without bound


class SchemaRefused(Exception):
    """A schema Gemini cannot take; `reason` says what and where."""

    def __init__(self, what: str, path: str) -> None:
        super().__init__(what, path)
        self.reason = f"the gemini protocol cannot take {what} ({path})"


def refused_keyword(keyword: str, path: str, detail: str = "") -> SchemaRefused:
    return SchemaRefused(f"JSON Schema keyword {keyword!r}" + (f" ({detail})" if detail else ""), path)


def to_gemini(schema: Any, path: str, *, ordering: bool = False) -> dict[str, Any]:
    """The Gemini Schema for a JSON Schema; raises SchemaRefused. At the root an object
    without properties is returned as {"type": "OBJECT"}: the caller decides what it means."""
    return _Converter(schema, ordering).convert(schema, path, depth=0)


class _Converter:
    def __init__(self, root: Any, ordering: bool) -> None:
        self.root = root
        self.ordering = ordering
        self.expanding: list[str] = []
        self.nodes = 0

    def convert(self, node: Any, path: str, *, depth: int, untyped_ok: bool = False) -> dict[str, Any]:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise SchemaRefused(f"a schema of more than {MAX_NODES} parts once its $refs are inlined", path)
        if isinstance(node, bool) or not isinstance(node, Mapping):
            raise SchemaRefused(f"the schema {node!r} (a schema must be an object here)", path)
        node = dict(node)
        if "$ref" in node:
            return self._ref(node, path, depth)
        for keyword in node:
            if keyword in REFUSED:
                raise refused_keyword(keyword, path)
        self._check_open_object(node, path)
        if isinstance(node.get("allOf"), list):
            return self.convert(self._merge_all_of(node, path), path, depth=depth, untyped_ok=untyped_ok)
        if isinstance(node.get("anyOf"), list) or isinstance(node.get("oneOf"), list):
            return self._any_of(node, path, depth)
        types = node.get("type")
        if isinstance(types, list):
            return self._type_list(node, types, path, depth)
        return self._single(node, path, depth, untyped_ok=untyped_ok)

    # -- references and combinators ---------------------------------------------------------
    def _ref(self, node: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        ref = node.pop("$ref")
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            raise refused_keyword("$ref", path, f"{ref!r} is not a reference inside the schema")
        if ref in self.expanding or ref == "#":
            raise refused_keyword("$ref", path, f"a recursive reference to {ref!r}")
        target: Any = self.root
        for token in ref[2:].split("/"):
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(target, Mapping) and token in target:
                target = target[token]
            elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
                target = target[int(token)]
            else:
                raise refused_keyword("$ref", path, f"{ref!r} points at nothing")
        if not isinstance(target, Mapping):
            raise refused_keyword("$ref", path, f"{ref!r} is not a schema object")
        self.expanding.append(ref)
        try:
            return self.convert({**target, **node}, path, depth=depth)
        finally:
            self.expanding.pop()

    def _merge_all_of(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        parts = node.pop("allOf")
        if len(parts) > 1:
            raise refused_keyword("allOf", path, "more than one schema")
        return {**parts[0], **node} if parts else node

    def _any_of(self, node: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        keyword = "anyOf" if "anyOf" in node else "oneOf"
        members = node.pop(keyword)
        node.pop("anyOf" if keyword == "oneOf" else "oneOf", None)
        real = [m for m in members if not _is_null(m)]
        nullable = len(real) < len(members)
        if not real:
            return self._single({**node, "type": "null"}, path, depth)
        if len(real) == 1:
            out = self.convert(
                {**node, **real[0]}, f"{path}.{keyword}[{members.index(real[0])}]", depth=depth
            )
            return {**out, "nullable": True} if nullable else out
        out = self._single(node, path, depth, untyped_ok=True)
        out["anyOf"] = []
        for i, member in enumerate(members):
            if member in real:
                converted = self.convert(member, f"{path}.{keyword}[{i}]", depth=depth + 1)
                out["anyOf"].append({**converted, "nullable": True} if nullable else converted)
        return out

    def _type_list(self, node: dict[str, Any], types: list[Any], path: str, depth: int) -> dict[str, Any]:
        real = [t for t in types if t != "null"]
        nullable = {"nullable": True} if len(real) < len(types) else {}
        if len(real) <= 1:
            return {**self._single({**node, "type": real[0] if real else "null"}, path, depth), **nullable}
        shared = {k: v for k, v in node.items() if k not in STRUCTURAL}
        out = self._single(shared, path, depth, untyped_ok=True)
        out["anyOf"] = []
        for t in real:
            gemini_type = _gemini_type(t, path)
            member = {k: v for k, v in node.items() if k in FOR_TYPE.get(gemini_type, ())}
            converted = self.convert({**member, "type": t}, path, depth=depth + 1)
            out["anyOf"].append({**converted, **nullable})
        return out

    # -- one schema of one type -------------------------------------------------------------
    def _single(self, node: dict[str, Any], path: str, depth: int, *, untyped_ok: bool = False) -> dict:
        out: dict[str, Any] = {k: node[k] for k in PASSED if k in node}
        values = _enum_values(node, path)
        gemini_type = _gemini_type(node["type"], path) if "type" in node else _implied_type(node)
        if values is not None:
            gemini_type = self._enum(out, values, gemini_type, path)
        if gemini_type is None and not untyped_ok:
            raise SchemaRefused("a schema without a type (Gemini cannot express 'any value')", path)
        if gemini_type is not None:
            out = {"type": gemini_type, **out}
        for keyword, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            limit = node.get(keyword)
            if isinstance(limit, int | float) and not isinstance(limit, bool):
                out[bound] = limit if bound not in out else _tighter(bound, out[bound], limit)
        if gemini_type == "ARRAY" and "items" in node:
            if not isinstance(node["items"], Mapping):
                raise refused_keyword("items", path, "a list of schemas: a tuple")
            out["items"] = self.convert(node["items"], f"{path}.items", depth=depth + 1)
        if gemini_type == "OBJECT":
            self._object(node, out, path, depth)
        return out

    def _enum(self, out: dict[str, Any], values: list[Any], gemini_type: str | None, path: str) -> str | None:
        if None in values:
            values = [v for v in values if v is not None]
            if not values:
                return "NULL"
            out["nullable"] = True
        if all(isinstance(v, str) for v in values):
            out["enum"] = values
            return gemini_type or "STRING"
        if all(isinstance(v, bool) for v in values):
            return "BOOLEAN"
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            out["format"], out["enum"] = "enum", [str(v) for v in values]  # Gemini's numeric enum
            return gemini_type or ("INTEGER" if all(isinstance(v, int) for v in values) else "NUMBER")
        raise refused_keyword("enum", path, "values of more than one type, or objects / arrays")

    def _object(self, node: dict[str, Any], out: dict[str, Any], path: str, depth: int) -> None:
        properties = node.get("properties") or {}
        if not isinstance(properties, Mapping):
            raise refused_keyword("properties", path, "not an object")
        if not properties:
            if depth > 0:
                raise SchemaRefused("an object schema without properties (a free-form object)", path)
            return
        out["properties"] = {
            name: self.convert(schema, f"{path}.properties.{name}", depth=depth + 1)
            for name, schema in properties.items()
        }
        listed = node.get("required")
        required = [n for n in listed if n in properties] if isinstance(listed, list) else []
        if required:
            out["required"] = required
        ordering = node.get("propertyOrdering")
        if isinstance(ordering, list):
            out["propertyOrdering"] = ordering
        elif self.ordering and len(properties) > 1:
            out["propertyOrdering"] = list(properties)

    def _check_open_object(self, node: dict[str, Any], path: str) -> None:
        for keyword in ("additionalProperties", "unevaluatedProperties"):
            value = node.get(keyword, False)
            if not isinstance(value, bool) and value != {}:
                raise refused_keyword(keyword, path, "a schema for the other properties")


def _is_null(schema: Any) -> bool:
    return isinstance(schema, Mapping) and schema.get("type") == "null" and len(schema) == 1


def _gemini_type(value: Any, path: str) -> str:
    gemini_type = TYPES.get(value.lower()) if isinstance(value, str) else None
    if gemini_type is None:
        raise refused_keyword("type", path, f"{value!r}")
    return gemini_type


def _implied_type(node: dict[str, Any]) -> str | None:
    if "properties" in node:
        return "OBJECT"
    if "items" in node:
        return "ARRAY"
    return None  # enum values imply their own type (see _enum)


def _enum_values(node: dict[str, Any], path: str) -> list[Any] | None:
    if "const" in node:
        return [node["const"]]
    if "enum" not in node:
        return None
    if not isinstance(node["enum"], list) or not node["enum"]:
        raise refused_keyword("enum", path, "not a non-empty list")
    return list(node["enum"])


def _tighter(bound: str, current: float, limit: float) -> float:
    return max(current, limit) if bound == "minimum" else min(current, limit)
