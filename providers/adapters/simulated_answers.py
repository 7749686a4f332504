"""What the simulated provider answers to tools, JSON formats and images (offline demo).

- Tools offered and allowed (tool_choice not "none"), and the conversation not already
  answering a tool call: the model calls the named tool (tool_choice naming one), else the
  first tool, with arguments made from its parameters schema (`example_value`), finish
  reason "tool_calls". After a tool turn it answers in words, quoting the tool's result.
- json_object: {"answer": <the text answer>}; json_schema: a value made from the schema, so
  the answer validates.
- Images: the answer says how many images it was shown.

`example_value` covers what real schemas use: type (or a list of types), properties and
required, items and minItems, enum, const, anyOf / oneOf / allOf (the first alternative),
local $ref into $defs / definitions, string formats, numeric minimum / maximum, minLength.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from providers.engine.types import ChatRequest, ToolCall

_FORMATS = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "00:00:00",
    "email": "someone@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "192.0.2.1",
}


def example_value(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A value that satisfies `schema` (for the schemas tools and structured outputs use)."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 8:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for key in ref[2:].split("/"):
            target = target.get(key) if isinstance(target, dict) else None
        return example_value(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return example_value((non_null or options)[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    return _by_type(kind, schema, root, depth)


def _by_type(kind: str, schema: dict[str, Any], root: Any, depth: int) -> Any:
    if kind == "object":
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        return {name: example_value(sub, root, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems") or 1))
        return [example_value(schema.get("items") or {}, root, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 1))
        value = low + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
        high = schema.get("maximum")
        value = min(value, high) if isinstance(high, int | float) else value
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    text = _FORMATS.get(str(schema.get("format")), "example")
    return text.ljust(int(schema.get("minLength") or 0), "x")


def tool_call(request: ChatRequest) -> ToolCall | None:
    """The call the simulated model makes, or None when it answers in words."""
    params = request.params
    if not params.tools or params.tool_choice == "none":
        return None
    if request.messages and request.messages[-1].role == "tool":
        return None
    tool = params.tools[0]
    if isinstance(params.tool_choice, dict):
        named = params.tool_choice["function"]["name"]
        tool = next(t for t in params.tools if t["function"]["name"] == named)
    function = tool["function"]
    arguments = json.dumps(example_value(function.get("parameters") or {"type": "object"}) or {})
    seed = f"{request.model}|{function['name']}|{len(request.messages)}|{arguments}"
    return ToolCall(f"call_sim_{hashlib.sha256(seed.encode()).hexdigest()[:20]}", function["name"], arguments)


def shaped_text(request: ChatRequest, text: str) -> str:
    """The text answer, shaped by what the request carries: tool results, images, a JSON format."""
    last = request.messages[-1] if request.messages else None
    if last is not None and last.role == "tool":
        text = f"{text} The tool said: {last.content[:200]}"
    images = sum(len(m.images) for m in request.messages if m.parts)
    if images:
        text = f"{text} (I was shown {images} image{'s' if images != 1 else ''}.)"
    spec = request.params.response_format or {}
    if spec.get("type") == "json_object":
        return json.dumps({"answer": text})
    if spec.get("type") == "json_schema":
        schema = (spec.get("json_schema") or {}).get("schema") or {"type": "object"}
        return json.dumps(example_value(schema))
    return text
