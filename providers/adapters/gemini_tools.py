"""Turns, tools and function calls in Gemini's generateContent shape, to and from the engine's
(OpenAI-shaped) vocabulary.

Request:
- each function tool becomes one entry of `tools: [{"functionDeclarations": [{name,
  description, parameters}]}]`, its JSON Schema converted by gemini_schema (`parameters`
  is left out for a function without arguments); tool_choice none / auto / required / one
  function becomes `toolConfig.functionCallingConfig` {mode NONE | AUTO | ANY,
  allowedFunctionNames}. Gemini has no switch for parallel calls: parallel_tool_calls is
  not sent.
- turns: system text goes to systemInstruction; other messages are grouped into alternating
  user / model turns (common.group_turns), consecutive texts of one turn joined by a blank
  line. A user turn with images sends its parts in order: {"text"} and {"inlineData":
  {"mimeType", "data"}} (the engine fetched URL images first: inline_images). An assistant
  turn becomes {"text"} then one {"functionCall": {"name", "args"}} per tool call (args: the
  parsed JSON object). A tool turn becomes {"functionResponse": {"name", "response":
  {"result": <the content parsed as JSON, else the text>}}} in the user turn that follows,
  so the results of one assistant turn travel together; the name is the one of the earlier
  call with that id (no server-side state).
- Gemini 3 models reject a replayed functionCall without the thoughtSignature they signed it
  with, which RANA does not keep: the first functionCall of each model turn then carries
  Google's documented "skip_thought_signature_validator" instead.

Response: text parts that are not `thought: true` are the answer; each functionCall part is a
tool call whose arguments are the JSON text of `args` and whose id is the call's own `id`
when Gemini sends one, else "call_" + a hash of the response id (or a random salt), its
position and its name: stable and unique within the response.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from providers.engine.types import (
    ChatParams,
    FailureClass,
    ImagePart,
    Message,
    ProviderError,
    ToolCall,
    ToolCallDelta,
)

from .common import group_turns
from .gemini_schema import SchemaRefused, to_gemini

MODES = {"none": "NONE", "auto": "AUTO", "required": "ANY"}
SKIP_SIGNATURE = "skip_thought_signature_validator"
_GEMINI_VERSION = re.compile(r"gemini-(\d+)")


class UntranslatableTurn(Exception):
    """A turn Gemini cannot be sent; `reason` says which and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- request: tools -----------------------------------------------------------------------
def tool_fields(params: ChatParams) -> dict[str, Any]:
    """`tools` and `toolConfig` (empty without tools); raises SchemaRefused."""
    if not params.tools:
        return {}
    declarations = [_declaration(tool, i) for i, tool in enumerate(params.tools)]
    fields: dict[str, Any] = {"tools": [{"functionDeclarations": declarations}]}
    choice = params.tool_choice
    if isinstance(choice, str) and choice in MODES:
        fields["toolConfig"] = {"functionCallingConfig": {"mode": MODES[choice]}}
    elif isinstance(choice, Mapping):
        name = choice["function"]["name"]
        fields["toolConfig"] = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    return fields


def _declaration(tool: Mapping[str, Any], index: int) -> dict[str, Any]:
    function = tool["function"]
    declaration: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        declaration["description"] = function["description"]
    schema = function.get("parameters")
    if schema:
        path = f"tools[{index}].function.parameters"
        parameters = to_gemini(schema, path)
        if parameters.get("type") != "OBJECT":
            raise SchemaRefused("parameters that are not an object schema", path)
        if parameters.get("properties"):
            declaration["parameters"] = parameters
    return declaration


# --- request: turns -----------------------------------------------------------------------
def contents(messages: tuple[Message, ...], model: str) -> tuple[str, list[dict[str, Any]]]:
    """System text and the `contents` turns; raises UntranslatableTurn."""
    reason = untranslatable(messages)
    if reason is not None:
        raise UntranslatableTurn(reason)
    system, turns = group_turns(messages, assistant_role="model")
    names = {call.id: call.name for m in messages for call in m.tool_calls}
    positions = {id(m): i for i, m in enumerate(messages)}
    signs = needs_signature(model)
    out = []
    for role, group in turns:
        parts: list[dict[str, Any]] = []
        for message in group:
            _extend(parts, _parts(message, names, positions[id(message)]))
        if signs:
            first_call = next((p for p in parts if "functionCall" in p), None)
            if first_call is not None:
                first_call["thoughtSignature"] = SKIP_SIGNATURE
        out.append({"role": role, "parts": parts or [{"text": ""}]})
    return system, out


def untranslatable(messages: tuple[Message, ...]) -> str | None:
    """Why these turns cannot be sent to Gemini, or None: a tool result must answer a call an
    earlier assistant turn made, since Gemini names the function it answers."""
    known: set[str] = set()
    for position, message in enumerate(messages):
        known.update(call.id for call in message.tool_calls)
        if message.role == "tool" and message.tool_call_id not in known:
            return (
                f"the gemini protocol needs the function name of tool call {message.tool_call_id!r} "
                f"(messages[{position}]), and no earlier assistant turn made that call"
            )
    return None


def needs_signature(model: str) -> bool:
    """Gemini 3 and later (and the -latest aliases) validate thought signatures."""
    version = _GEMINI_VERSION.search(model.lower())
    return int(version[1]) >= 3 if version else "latest" in model.lower()


def _extend(parts: list[dict[str, Any]], more: list[dict[str, Any]]) -> None:
    """Add one message's parts; a text that follows a text (the message before) joins it."""
    if parts and more and set(parts[-1]) == {"text"} and set(more[0]) == {"text"}:
        parts[-1] = {"text": parts[-1]["text"] + "\n\n" + more[0]["text"]}
        more = more[1:]
    parts.extend(more)


def _parts(message: Message, names: dict[str, str], position: int) -> list[dict[str, Any]]:
    if message.role == "tool":
        name = names[message.tool_call_id or ""]
        return [{"functionResponse": {"name": name, "response": {"result": _result(message.content)}}}]
    if message.parts:
        return [_content_part(part, position) for part in message.parts if _has_content(part)]
    parts: list[dict[str, Any]] = [{"text": message.content}] if message.content else []
    parts += [{"functionCall": {"name": c.name, "args": _arguments(c.arguments)}} for c in message.tool_calls]
    return parts


def _has_content(part: Any) -> bool:
    return isinstance(part, ImagePart) or bool(part.text)


def _content_part(part: Any, position: int) -> dict[str, Any]:
    if not isinstance(part, ImagePart):
        return {"text": part.text}
    if part.data is None or not part.media_type:
        raise ProviderError(
            FailureClass.INVALID_REQUEST,
            f"messages[{position}]: an image was not fetched inline (Gemini cannot take image URLs)",
        )
    return {"inlineData": {"mimeType": part.media_type, "data": part.data}}


def _result(content: str) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return content


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- response -----------------------------------------------------------------------------
class CallIds:
    """Tool-call ids for one response: Gemini's own, else "call_" + a stable short hash."""

    def __init__(self, response_id: Any = None) -> None:
        self.salt = str(response_id or "") or uuid.uuid4().hex
        self.count = 0

    def next(self, call: Mapping[str, Any]) -> str:
        index, self.count = self.count, self.count + 1
        given = call.get("id")
        if isinstance(given, str) and given:
            return given
        digest = hashlib.sha256(f"{self.salt}:{index}:{call.get('name')}".encode()).hexdigest()
        return "call_" + digest[:24]


def answer_parts(parts: Any) -> tuple[str, list[Mapping[str, Any]]]:
    """The answer's text (thought parts left out) and its functionCall objects, in order."""
    text, calls = [], []
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, Mapping):
            continue
        call = part.get("functionCall")
        if isinstance(call, Mapping) and isinstance(call.get("name"), str) and call["name"]:
            calls.append(call)
        elif isinstance(part.get("text"), str) and not part.get("thought"):
            text.append(part["text"])
    return "".join(text), calls


def tool_call(call: Mapping[str, Any], ids: CallIds) -> ToolCall:
    return ToolCall(ids.next(call), str(call["name"]), json.dumps(call.get("args") or {}))


def tool_deltas(calls: list[Mapping[str, Any]], ids: CallIds) -> tuple[ToolCallDelta, ...]:
    """Whole streamed calls as deltas: each call's head (index, id, name), then its arguments."""
    deltas: list[ToolCallDelta] = []
    for call in calls:
        index = ids.count
        whole = tool_call(call, ids)
        deltas += [
            ToolCallDelta(index, id=whole.id, name=whole.name),
            ToolCallDelta(index, arguments=whole.arguments),
        ]
    return tuple(deltas)
