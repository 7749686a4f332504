"""JSON output (response_format json_object / json_schema) on Anthropic's Messages API.

One of two ways per request:

1. Structured outputs (constrained decoding, some models only): when the provider option
   `structured_outputs` is true and the request is json_schema with a schema constrained
   decoding can carry, the body gets `output_format: {"type": "json_schema", "schema": ...}`
   and the call the header `anthropic-beta: structured-outputs-2025-11-13`. The answer is
   ordinary text (a text block, text_delta events). The schema is sent with annotations
   (default, examples, $comment...) dropped and `additionalProperties: false` on every object,
   as the API requires. Carried: type (one of object, array, string, integer, number, boolean,
   null), properties, required, items, enum / const of scalars, anyOf, allOf, non-recursive
   $ref into $defs / definitions, description, title, string formats the API knows, minItems
   0 or 1. Anything else (json_object, a root that is not an object with properties, a
   free-form object, numeric or length bounds, pattern, oneOf, recursive refs...) goes the
   second way: the API refuses schemas it cannot constrain with a 400 (invalid_request,
   which ends a walk), and RANA still validates every non-streamed answer against the
   caller's own schema (engine/validation.py), so nothing dropped here goes unchecked.

2. A forced tool (every model): a tool named ANSWER_TOOL ("json_answer"; "_" is appended
   while a real tool has that name) whose input_schema is the schema ({"type": "object"} for
   json_object; a schema whose root is not an object is wrapped as {"value": schema} and
   unwrapped on the way back), forced with tool_choice {"type": "tool", "name"}. When the
   request has real tools and lets the model choose (tool_choice auto or none given), the
   answer tool is added beside them with tool_choice {"type": "any"} (keeping
   disable_parallel_tool_use): the model either calls a real tool or answers through the
   answer tool. tool_choice "none" forces the answer tool. tool_choice "required" or a named
   function forces a real tool, so no answer tool is offered (the JSON answer comes on a
   later turn).

   The answer tool's input always reads as TEXT, never as a tool call: non-streamed, its
   block's input becomes compact JSON text in the block's place among the text blocks, and
   finish_reason tool_use becomes "stop" unless real tools were called too; streamed, its
   input_json_delta fragments are text deltas (an answer tool without any fragment yields
   "{}"; a wrapped answer is sent whole when its block ends).

A forced tool_choice (any / tool) is incompatible with extended thinking, so thinking is left
off for those requests (anthropic_thinking.py; reasoning_effort is a hint).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from providers.engine.types import ChatRequest

ANSWER_TOOL = "json_answer"
STRUCTURED_OUTPUTS_BETA = "structured-outputs-2025-11-13"
_ANSWER_HELP = "Give your final answer by calling this tool: its input is the answer, as JSON."

_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)
_ANNOTATIONS = frozenset(
    {"default", "examples", "$comment", "deprecated", "readOnly", "writeOnly", "$schema", "$id"}
)
_COMMON = frozenset({"type", "description", "title", "enum", "const", "anyOf", "allOf", "$ref"})
_BY_TYPE = {
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "minItems"}),
    "string": frozenset({"format"}),
}
_DEFS = ("$defs", "definitions")
_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True, slots=True)
class AnswerTool:
    """The forced tool that carries a JSON answer; `wrapped`: the schema sits under "value"."""

    name: str
    wrapped: bool = False

    def text(self, value: Any) -> str:
        """The answer text for the tool's input (compact JSON)."""
        if self.wrapped and isinstance(value, dict) and "value" in value:
            value = value["value"]
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class JsonOutput:
    """How one request gets its JSON: output_format (structured outputs) or an answer tool."""

    output_format: dict[str, Any] | None = None
    tool: AnswerTool | None = None
    tool_entry: dict[str, Any] | None = None


def json_output(request: ChatRequest) -> JsonOutput | None:
    """The JSON output this request asks for, or None (no JSON format, or real tools forced)."""
    params = request.params
    spec = params.response_format or {}
    kind = spec.get("type")
    if kind not in ("json_object", "json_schema"):
        return None
    described = spec.get("json_schema") if isinstance(spec.get("json_schema"), dict) else {}
    schema = described.get("schema") if isinstance(described.get("schema"), dict) else None
    native_ok = request.provider.options.get("structured_outputs") is True
    if kind == "json_schema" and schema is not None and native_ok:
        native = native_schema(schema)
        if native is not None:
            return JsonOutput(output_format={"type": "json_schema", "schema": native})
    choice = params.tool_choice
    if params.tools and (choice == "required" or isinstance(choice, dict)):
        return None
    names = {tool["function"]["name"] for tool in params.tools}
    name = ANSWER_TOOL
    while name in names:
        name += "_"
    input_schema, wrapped = _tool_schema(schema if kind == "json_schema" else None)
    entry = {"name": name, "description": _description(described), "input_schema": input_schema}
    return JsonOutput(tool=AnswerTool(name, wrapped), tool_entry=entry)


def json_fields(output: JsonOutput, fields: dict[str, Any]) -> dict[str, Any]:
    """The body's tool fields (anthropic_tools.tool_fields) with this JSON output added."""
    if output.output_format is not None:
        return {**fields, "output_format": output.output_format}
    assert output.tool is not None and output.tool_entry is not None
    real = fields.get("tools") or []
    choice = fields.get("tool_choice")
    if real and (choice is None or choice.get("type") == "auto"):
        forced: dict[str, Any] = {"type": "any"}
        if choice and choice.get("disable_parallel_tool_use"):
            forced["disable_parallel_tool_use"] = True
    else:
        forced = {"type": "tool", "name": output.tool.name}
    return {**fields, "tools": [*real, output.tool_entry], "tool_choice": forced}


def _description(described: dict[str, Any]) -> str:
    extra = described.get("description")
    return f"{_ANSWER_HELP} {extra}" if isinstance(extra, str) and extra else _ANSWER_HELP


def _tool_schema(schema: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """The answer tool's input_schema (an object at the root, as tools need) and whether it wraps."""
    if schema is None:
        return {"type": "object"}, False
    if schema.get("type") == "object":
        return dict(schema), False
    inner = {k: v for k, v in schema.items() if k not in _DEFS}
    wrapper: dict[str, Any] = {"type": "object", "properties": {"value": inner}, "required": ["value"]}
    wrapper.update({k: schema[k] for k in _DEFS if k in schema})  # "#/$defs/..." still resolves
    return wrapper, True


# --- what constrained decoding can carry --------------------------------------------------
class _Unsupported(Exception):
    pass


def native_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The schema as structured outputs take it, or None when they cannot carry it."""
    if schema.get("type") != "object" or not schema.get("properties"):
        return None
    try:
        out = _node(schema, root=True)
        _check_refs(schema)
    except _Unsupported:
        return None
    return out


def _node(node: Any, *, root: bool = False) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise _Unsupported
    kind = node.get("type")
    if kind is not None and (not isinstance(kind, str) or kind not in _TYPES):
        raise _Unsupported
    allowed = _COMMON | _BY_TYPE.get(kind or "", frozenset()) | (frozenset(_DEFS) if root else frozenset())
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _ANNOTATIONS:
            continue
        if key not in allowed or not _value_ok(key, value):
            raise _Unsupported
        if key in ("properties", *_DEFS):
            out[key] = {name: _node(sub) for name, sub in value.items()}
        elif key in ("anyOf", "allOf"):
            out[key] = [_node(sub) for sub in value]
        elif key == "items":
            out[key] = _node(value)
        else:
            out[key] = value
    if kind == "object":
        if not node.get("properties") and "additionalProperties" not in node:
            raise _Unsupported  # a free-form object: constrained decoding needs its keys
        out["additionalProperties"] = False
    return out


def _value_ok(key: str, value: Any) -> bool:
    if key in ("properties", *_DEFS):
        return isinstance(value, dict)
    if key in ("anyOf", "allOf"):
        return isinstance(value, list) and bool(value)
    checks = {
        "enum": lambda v: isinstance(v, list) and all(isinstance(x, _SCALARS) for x in v),
        "const": lambda v: isinstance(v, _SCALARS),
        "required": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "additionalProperties": lambda v: v is False,
        "minItems": lambda v: v in (0, 1) and not isinstance(v, bool),
        "format": lambda v: v in _FORMATS,
        "$ref": lambda v: isinstance(v, str) and v.startswith(("#/$defs/", "#/definitions/")),
        "description": lambda v: isinstance(v, str),
        "title": lambda v: isinstance(v, str),
    }
    check = checks.get(key)
    return check(value) if check is not None else True


def _check_refs(schema: dict[str, Any]) -> None:
    """Every $ref must name a definition of this schema, and none may lead back to itself."""
    defs = {f"#/{k}/{name}": sub for k in _DEFS for name, sub in (schema.get(k) or {}).items()}

    def refs(node: Any, top: bool = False) -> set[str]:
        if isinstance(node, list):
            return set().union(*(refs(v) for v in node))
        if not isinstance(node, dict):
            return set()
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(v) for k, v in node.items() if not (top and k in _DEFS)))

    graph = {name: refs(sub) for name, sub in defs.items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name not in defs or name in path:
            raise _Unsupported  # unknown, or recursive
        if name not in done:
            for target in graph[name]:
                visit(target, (*path, name))
            done.add(name)

    for name in refs(schema, top=True):
        visit(name, ())


# --- the answer tool in a stream -----------------------------------------------------------
class AnswerStream:
    """The answer tool's block in a stream: its argument fragments as answer text."""

    def __init__(self, tool: AnswerTool) -> None:
        self.tool = tool
        self.index: int | None = None  # the content block that carries the answer
        self._fragments: list[str] = []

    @property
    def used(self) -> bool:
        return self.index is not None

    def opens(self, index: int, block: dict[str, Any]) -> bool:
        """Whether this tool_use block is the answer tool's (only the first one is relayed)."""
        if block.get("name") != self.tool.name:
            return False
        if self.index is None:
            self.index = index
        return True

    def owns(self, index: int) -> bool:
        return index == self.index

    def fragment(self, text: str) -> str:
        self._fragments.append(text)
        return "" if self.tool.wrapped else text

    def close(self) -> str:
        """What is left to send when the answer's block ends."""
        whole = "".join(self._fragments)
        if not self.tool.wrapped:
            return "" if whole else "{}"
        try:
            return self.tool.text(json.loads(whole or "{}"))
        except ValueError:
            return whole  # not JSON: sent as it came (the engine fails the stream at its end)
