"""Body logging: what a request said and got back, as its chain allows (off, on, first N characters).

`body_fields` turns a finished request into a CompletionBody row's values, or None when its
chain keeps no bodies (then nothing is built: one attribute read per request). Text is masked
for the chain's provider keys and anything shaped like a key (providers.redaction), images are
kept as their URL or, for inline data, their type and size (never the bytes). With "first N
characters" every message's text, every tool call's arguments and the answer are cut at N
characters and the row says so. The parameters a request set are on its completion, kept or
not (providers.services.ledger.params_recorded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from providers.engine.plan import ChainPlan
from providers.engine.types import Message, ToolCall
from providers.models import BodyLogging
from providers.redaction import redact


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


def body_fields(
    *,
    mode: str,
    chars: int,
    plan: ChainPlan,
    request_id: Any,
    created_at: Any,
    messages: Sequence[Message],
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
