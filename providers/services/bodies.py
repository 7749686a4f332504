"""Body logging: what a request said and got back, as its chain allows (off, on, first N characters).

`body_fields` turns a finished request into a CompletionBody row's values, or None when its
chain keeps no bodies (then nothing is built: one attribute read per request). Text is masked
for the chain's provider keys and anything shaped like a key (providers.redaction), images are
kept as their URL or, for inline data, their type and size (never the bytes), tools and
response formats by name. With "first N characters" every message's text, every tool call's
arguments and the answer are cut at N characters and the row says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import orjson

from providers.engine.plan import ChainPlan
from providers.engine.types import ChatParams, Message, ToolCall
from providers.models import BodyLogging
from providers.redaction import redact

_SKIPPED_PARAMS = frozenset({"tools", "response_format", "tool_choice"})  # shown in their own words


class _Cutter:
    def __init__(self, chars: int | None, secrets: tuple[str, ...]) -> None:
        self.chars, self.secrets, self.truncated = chars, secrets, False

    def __call__(self, text: str) -> str:
        text = redact(text, self.secrets)  # first: a key cut in two would no longer be found
        if self.chars is not None and len(text) > self.chars:
            text, self.truncated = text[: self.chars], True
        return text


def _image(part: Any) -> str:
    if part.url.startswith("data:"):
        data = part.data or ""
        size = len(data) * 3 // 4 - (len(data) - len(data.rstrip("=")))  # base64's length, decoded
        return f"inline {part.media_type or 'image'}, {size:,} bytes"
    return part.url


def _message(message: Message, cut: _Cutter) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": message.role, "content": cut(message.content)}
    if message.tool_calls:
        entry["tool_calls"] = _calls(message.tool_calls, cut)
    if message.tool_call_id:
        entry["tool_call_id"] = message.tool_call_id
    if images := message.images:
        entry["images"] = [cut(_image(p)) for p in images]
    return entry


def _calls(calls: Sequence[ToolCall], cut: _Cutter) -> list[dict[str, str]]:
    return [{"name": c.name, "arguments": cut(c.arguments)} for c in calls]


def _params(params: ChatParams) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if value is None or value == () or f.name in _SKIPPED_PARAMS:
            continue
        kept[f.name] = list(value) if isinstance(value, tuple) else value
    if params.tools:
        kept["tools"] = [t.get("function", {}).get("name", "?") for t in params.tools]
    if params.tool_choice is not None:
        choice = params.tool_choice
        kept["tool_choice"] = choice if isinstance(choice, str) else choice.get("function", {}).get("name")
    if params.response_format:
        schema = params.response_format.get("json_schema") or {}
        kept["response_format"] = " ".join(
            filter(None, (params.response_format.get("type"), schema.get("name")))
        )
    return kept


def body_fields(
    *,
    mode: str,
    chars: int,
    plan: ChainPlan,
    request_id: Any,
    created_at: Any,
    messages: Sequence[Message],
    params: ChatParams,
    answer: str = "",
    tool_calls: Sequence[ToolCall] = (),
) -> dict[str, Any] | None:
    """A CompletionBody row's values, or None when the chain keeps no bodies (`mode` off)."""
    if mode == BodyLogging.OFF:
        return None
    secrets = tuple(step.provider.api_key for step in plan.steps if step.provider.api_key)
    cut = _Cutter(chars if mode == BodyLogging.FIRST_CHARS else None, secrets)
    conversation = [_message(m, cut) for m in messages]
    return {
        "completion_id": request_id,
        "created_at": created_at,
        "messages": orjson.dumps(conversation).decode(),
        "prompt": "\n\n".join(m["content"] for m in conversation if m["content"]),
        "params": _params(params) or None,
        "answer": cut(answer),
        "answer_tool_calls": _calls(tool_calls, cut) or None,
        "truncated": cut.truncated,
    }


def body_messages(stored: str) -> list[dict[str, Any]]:
    """The stored conversation, for pages; [] when it cannot be read."""
    try:
        value = orjson.loads(stored)
    except orjson.JSONDecodeError:
        return []
    return value if isinstance(value, list) else []
