"""Tool calling in Anthropic's Messages format, to and from the engine's (OpenAI-shaped) vocabulary.

Request: each function tool becomes {"name", "description", "input_schema"} (no parameters:
{"type": "object"}); tool_choice auto / required / none / one function becomes {"type":
"auto" | "any" | "none" | "tool"} (parallel_tool_calls false adds disable_parallel_tool_use).
Tool calls and tool results in the conversation become tool_use / tool_result blocks
(anthropic_messages.py); a JSON answer may add its own forced tool (anthropic_json.py).

Response: tool_use blocks become tool calls whose arguments are the JSON text of `input`
({} when there is none). Streamed, a tool_use content_block_start opens a call (its id and
name), each input_json_delta adds a fragment of its arguments, and a call that got no
fragment by its content_block_stop (a tool without arguments) gets "{}", so its arguments
always add up to a JSON object.
"""

from __future__ import annotations

import json
from typing import Any

from providers.engine.types import ChatParams, ToolCall, ToolCallDelta

_CHOICES = {"auto": "auto", "required": "any", "none": "none"}


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


def parse_tool_calls(content: list[Any], *, skip: str | None = None) -> tuple[ToolCall, ...]:
    """The tool_use blocks as tool calls (`skip`: the name of the JSON answer tool, not a call)."""
    return tuple(
        ToolCall(str(b.get("id") or ""), str(b["name"]), json.dumps(b.get("input") or {}))
        for b in content
        if isinstance(b, dict)
        and b.get("type") == "tool_use"
        and isinstance(b.get("name"), str)
        and b["name"] != skip
    )


class ToolStream:
    """Streamed tool_use blocks as tool-call deltas, numbered 0, 1, ... in order of appearance."""

    def __init__(self) -> None:
        self._index: dict[int, int] = {}  # content block index -> tool call index
        self._silent: set[int] = set()  # tool calls that got no argument fragment yet

    @property
    def started(self) -> bool:
        return bool(self._index)

    def start(self, block_index: int, block: dict[str, Any]) -> tuple[ToolCallDelta, ...]:
        if block.get("type") != "tool_use":
            return ()
        index = self._index.setdefault(block_index, len(self._index))
        self._silent.add(index)
        return (ToolCallDelta(index, id=str(block.get("id") or ""), name=str(block.get("name") or "")),)

    def delta(self, block_index: int, delta: dict[str, Any]) -> tuple[ToolCallDelta, ...]:
        if delta.get("type") != "input_json_delta":
            return ()
        index = self._index.get(block_index)
        fragment = delta.get("partial_json")
        if index is None or not isinstance(fragment, str) or not fragment:
            return ()
        self._silent.discard(index)
        return (ToolCallDelta(index, arguments=fragment),)

    def stop(self, block_index: int) -> tuple[ToolCallDelta, ...]:
        """At a block's end: "{}" for a call that got no arguments at all."""
        index = self._index.get(block_index)
        if index is None or index not in self._silent:
            return ()
        self._silent.discard(index)
        return (ToolCallDelta(index, arguments="{}"),)
