"""The conversation in Anthropic's Messages shape: the top-level `system`, then alternating turns.

System messages are joined (blank line between them) into `system`; the other messages are
grouped so that consecutive messages of one role share a turn (tool turns are the user's), as
the API requires user and assistant turns to alternate. A conversation that starts with an
assistant turn is sent as it is: the API decides.

A plain text conversation sends each turn's content as one string (its messages joined by a
blank line). As soon as any message carries tool calls, is a tool turn, or carries images
(Message.parts), every turn is sent as content blocks:

- text -> {"type": "text", "text"} (empty text sends no block);
- an image part -> {"type": "image", "source": ...}: inline data (a data: URL, or an image RANA
  fetched) as {"type": "base64", "media_type", "data"}, an http(s) URL as {"type": "url",
  "url"} (Anthropic fetches it); OpenAI's `detail` hint has no equivalent and is dropped;
  a turn's text and image parts keep their order;
- an assistant turn's tool calls -> tool_use blocks {"id", "name", "input"} after its text
  (arguments that are not a JSON object are sent as {});
- a tool turn -> {"type": "tool_result", "tool_use_id", "content"}; the results that answer
  one assistant turn arrive together in the user turn that follows it.
"""

from __future__ import annotations

import json
from typing import Any

from providers.engine.types import ImagePart, Message

from .common import group_turns


def uses_blocks(messages: tuple[Message, ...]) -> bool:
    return any(m.tool_calls or m.role == "tool" or m.parts for m in messages)


def build_messages(messages: tuple[Message, ...]) -> tuple[str, list[dict[str, Any]]]:
    """(system text, the turns), as strings for plain text and as content blocks otherwise."""
    system, turns = group_turns(messages, assistant_role="assistant")
    if not uses_blocks(messages):
        return system, [
            {"role": role, "content": "\n\n".join(m.content for m in group)} for role, group in turns
        ]
    return system, [
        {"role": role, "content": [block for m in group for block in blocks(m)]} for role, group in turns
    ]


def blocks(message: Message) -> list[dict[str, Any]]:
    """One message as content blocks."""
    if message.role == "tool":
        return [{"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}]
    out: list[dict[str, Any]] = []
    if message.parts:
        for part in message.parts:
            if isinstance(part, ImagePart):
                out.append({"type": "image", "source": image_source(part)})
            elif part.text:
                out.append({"type": "text", "text": part.text})
    elif message.content:
        out.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        input_ = _arguments(call.arguments)
        out.append({"type": "tool_use", "id": call.id, "name": call.name, "input": input_})
    return out


def image_source(part: ImagePart) -> dict[str, Any]:
    if part.inline:
        return {"type": "base64", "media_type": part.media_type, "data": part.data}
    return {"type": "url", "url": part.url}


def _arguments(text: str) -> Any:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
