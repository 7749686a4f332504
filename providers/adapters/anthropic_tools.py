"""Tool calling in Anthropic's Messages format, to and from the engine's (OpenAI-shaped) vocabulary.

Request: each function tool becomes {"name", "description", "input_schema"}; tool_choice
auto / required / none / one function becomes {"type": "auto" | "any" | "none" | "tool"}
(parallel_tool_calls false adds disable_parallel_tool_use). An assistant turn's tool calls
become tool_use blocks after its text; each tool turn becomes a tool_result block in a user
turn, and consecutive turns of one role are merged, so the results of one assistant turn
arrive together in the user turn that follows it, as the API requires.

Response: tool_use blocks become tool calls whose arguments are the JSON text of `input`;
streamed, a tool_use content_block_start opens a call (its id and name) and each
input_json_delta adds a fragment of its arguments.
"""

from __future__ import annotations

import json
from typing import Any

from providers.engine.types import ChatParams, Message, ToolCall, ToolCallDelta

from .common import group_turns

_CHOICES = {"auto": "auto", "required": "any", "none": "none"}


def uses_tools(messages: tuple[Message, ...], params: ChatParams) -> bool:
    return bool(params.tools) or any(m.tool_calls or m.role == "tool" for m in messages)


def _arguments(text: str) -> Any:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [{"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}]
    blocks: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    for call in message.tool_calls:
        input_ = _arguments(call.arguments)
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": input_})
    return blocks


def tool_messages(messages: tuple[Message, ...]) -> tuple[str, list[dict[str, Any]]]:
    """(system text, turns of content blocks), consecutive turns of one role merged."""
    system, turns = group_turns(messages, assistant_role="assistant")
    return system, [
        {"role": role, "content": [block for m in group for block in _blocks(m)]} for role, group in turns
    ]


def tool_fields(params: ChatParams) -> dict[str, Any]:
    """The request's `tools` and `tool_choice` in Anthropic's shape (empty without tools)."""
    if not params.tools:
        return {}
    tools = []
    for tool in params.tools:
        function = tool["function"]
        entry = {"name": function["name"], "input_schema": function.get("parameters") or {"type": "object"}}
        if function.get("description"):
            entry["description"] = function["description"]
        tools.append(entry)
    fields: dict[str, Any] = {"tools": tools}
    choice = params.tool_choice
    if isinstance(choice, str):
        fields["tool_choice"] = {"type": _CHOICES[choice]}
    elif choice is not None:
        fields["tool_choice"] = {"type": "tool", "name": choice["function"]["name"]}
    if params.parallel_tool_calls is False:
        fields.setdefault("tool_choice", {"type": "auto"})
        if fields["tool_choice"]["type"] != "none":
            fields["tool_choice"]["disable_parallel_tool_use"] = True
    return fields


def parse_tool_calls(content: list[Any]) -> tuple[ToolCall, ...]:
    return tuple(
        ToolCall(str(b.get("id") or ""), str(b["name"]), json.dumps(b.get("input") or {}))
        for b in content
        if isinstance(b, dict) and b.get("type") == "tool_use" and isinstance(b.get("name"), str)
    )


class ToolStream:
    """Streamed tool_use blocks as tool-call deltas, numbered 0, 1, ... in order of appearance."""

    def __init__(self) -> None:
        self._index: dict[int, int] = {}  # content block index -> tool call index

    @property
    def started(self) -> bool:
        return bool(self._index)

    def start(self, payload: dict[str, Any], block: dict[str, Any]) -> tuple[ToolCallDelta, ...]:
        if block.get("type") != "tool_use":
            return ()
        index = self._index.setdefault(int(payload.get("index") or 0), len(self._index))
        return (ToolCallDelta(index, id=str(block.get("id") or ""), name=str(block.get("name") or "")),)

    def delta(self, payload: dict[str, Any], delta: dict[str, Any]) -> tuple[ToolCallDelta, ...]:
        if delta.get("type") != "input_json_delta":
            return ()
        index = self._index.get(int(payload.get("index") or 0))
        fragment = delta.get("partial_json")
        if index is None or not isinstance(fragment, str) or not fragment:
            return ()
        return (ToolCallDelta(index, arguments=fragment),)
