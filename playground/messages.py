"""The playground's conversations as OpenAI-shaped message dicts (what the hub validates).

A run stores every message it sent; an image the user attached is a data: URL inside its
user message, a tool call is OpenAI's {"id", "type": "function", "function": {"name",
"arguments"}} and a tool result is {"role": "tool", "tool_call_id", "content"}. Pure
functions, no database: the model's properties and the services build on them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

IMAGE_URL_PREFIXES = ("data:image/", "https://", "http://")
TITLE_LENGTH = 200


def pretty_json(text: str | None) -> str | None:
    """JSON text indented for reading, or None when it is not JSON."""
    if not text or not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return json.dumps(value, indent=2, ensure_ascii=False)


def text_of(content: Any) -> str:
    """A message's text: the string, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text"
        )
    return ""


def images_of(content: Any) -> list[str]:
    """The image URLs of a message's image_url parts (only image data: URLs and http(s) URLs)."""
    if not isinstance(content, list):
        return []
    urls = []
    for part in content:
        spec = (
            part.get("image_url") if isinstance(part, Mapping) and part.get("type") == "image_url" else None
        )
        url = spec.get("url") if isinstance(spec, Mapping) else spec
        if isinstance(url, str) and url.lower().startswith(IMAGE_URL_PREFIXES):
            urls.append(url)
    return urls


def user_message(text: str, image_url: str | None = None) -> dict[str, Any]:
    """A user turn: plain text, or text and one image as content parts."""
    if not image_url:
        return {"role": "user", "content": text}
    parts = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": image_url}}]
    return {"role": "user", "content": parts}


def tool_call_dicts(calls: Iterable[Any]) -> list[dict[str, Any]]:
    """The hub's ToolCall objects in OpenAI's shape (what a run stores and sends back)."""
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]


class ToolCallAssembly:
    """Streamed tool-call pieces put back together by index: a call's first piece has its id
    and name, later pieces append fragments of its arguments."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def add(self, deltas: Iterable[Any]) -> None:
        for delta in deltas:
            call = self._calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] = delta.id or call["id"]
            call["name"] = delta.name or call["name"]
            call["arguments"] += delta.arguments or ""

    def as_dicts(self) -> list[dict[str, Any]]:
        return [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for _, c in sorted(self._calls.items())
        ]


def calls_for_display(tool_calls: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Each call's id, name and arguments (pretty-printed when they are JSON)."""
    out = []
    for call in tool_calls or []:
        function = call.get("function") or {}
        arguments = function.get("arguments") or ""
        out.append(
            {
                "id": call.get("id") or "",
                "name": function.get("name") or "",
                "arguments": pretty_json(arguments) or arguments,
            }
        )
    return out


def assistant_turn(answer: str, tool_calls: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"role": "assistant", "content": answer or None, "tool_calls": list(tool_calls)}


def tool_messages(tool_calls: Sequence[Mapping[str, Any]], results: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"role": "tool", "tool_call_id": call["id"], "content": result}
        for call, result in zip(tool_calls, results, strict=True)
    ]


def added_messages(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """What the last turn added: the user or tool messages after the last assistant message."""
    tail: list[Mapping[str, Any]] = []
    for message in reversed(messages):
        if message.get("role") not in ("user", "tool"):
            break
        tail.insert(0, message)
    return tail


def tool_results(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The tool results the last turn sent (each with its call's function name), or []."""
    added = added_messages(messages)
    if not added or any(m.get("role") != "tool" for m in added):
        return []
    asked = next((m for m in reversed(messages) if m.get("role") == "assistant"), {})
    names = {c.get("id"): (c.get("function") or {}).get("name", "") for c in asked.get("tool_calls") or []}
    out = []
    for m in added:
        content = text_of(m.get("content"))
        out.append(
            {
                "id": m.get("tool_call_id", ""),
                "name": names.get(m.get("tool_call_id"), ""),
                "content": pretty_json(content) or content,
            }
        )
    return out


def title_of(messages: Sequence[Mapping[str, Any]]) -> str:
    """One line for the history: what the last turn added."""
    results = tool_results(messages)
    if results:
        names = ", ".join(dict.fromkeys(r["name"] or r["id"] for r in results))
        return f"Tool results: {names}"[:TITLE_LENGTH]
    user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    if user is None:
        return ""
    text = " ".join(text_of(user.get("content")).split())
    if images_of(user.get("content")):
        text = f"{text} (with an image)"
    return text[:TITLE_LENGTH]
