"""A raw client for the fake upstream: post a chat request, read its SSE, reassemble streams.

For the fake's own tests, and to check what an adapter should get out of a stream:

    response = ask(fake, "anthropic", stream=True, tools=[...])
    blocks, stop = anthropic_assemble(sse_events(response))
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from .upstream import FakeUpstream


def request_for(
    fake: FakeUpstream, protocol: str, *, model: str = "m", stream: bool = False, **body: Any
) -> tuple[str, dict[str, Any]]:
    """URL and JSON body of a minimal request in the protocol's own shape; body adds fields."""
    root = fake.base_url
    if protocol == "gemini":
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        url = f"{root}/v1beta/models/{model}:{method}"
        payload: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    else:
        url = f"{root}/v1/chat/completions" if protocol == "openai" else f"{root}/v1/messages"
        payload = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        if protocol == "openai" and stream:
            payload["stream_options"] = {"include_usage": True}
        if protocol == "anthropic":
            payload["max_tokens"] = 256
    payload.update(body)
    return url, payload


def ask(fake: FakeUpstream, protocol: str, **options: Any) -> httpx.Response:
    """One request (see request_for), answered in full."""
    url, payload = request_for(fake, protocol, **options)
    with httpx.Client(trust_env=False, timeout=5) as client:
        return client.post(url, json=payload)


def read_until_cut(fake: FakeUpstream, protocol: str, **options: Any) -> tuple[str, bool]:
    """The body text that arrived, and whether the connection was cut before its end."""
    url, payload = request_for(fake, protocol, **options)
    received = b""
    with (
        httpx.Client(trust_env=False, timeout=5) as client,
        client.stream("POST", url, json=payload) as response,
    ):
        try:
            for data in response.iter_bytes():
                received += data
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return received.decode(errors="replace"), True
    return received.decode(errors="replace"), False


def sse_events(response: httpx.Response) -> list[tuple[str | None, Any]]:
    """(event name, data) per SSE event; data parsed as JSON unless it is [DONE]."""
    events: list[tuple[str | None, Any]] = []
    for block in response.text.replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            text = "\n".join(data)
            events.append((name, text if text == "[DONE]" else json.loads(text)))
    return events


def openai_assemble(events: list[tuple[str | None, Any]]) -> dict[str, Any]:
    """The message a stream adds up to: content, tool_calls (by index), finish_reason, usage."""
    content, calls, finish, usage = "", {}, None, None
    for _, data in events:
        if data == "[DONE]":
            continue
        usage = data.get("usage") or usage
        for choice in data["choices"]:
            delta = choice["delta"]
            content += delta.get("content") or ""
            for part in delta.get("tool_calls") or []:
                call = calls.setdefault(part["index"], {"id": None, "name": "", "arguments": ""})
                call["id"] = part.get("id") or call["id"]
                call["name"] += part.get("function", {}).get("name") or ""
                call["arguments"] += part.get("function", {}).get("arguments") or ""
            finish = choice["finish_reason"] or finish
    return {
        "content": content,
        "tool_calls": [calls[i] for i in sorted(calls)],
        "finish": finish,
        "usage": usage,
    }


def anthropic_assemble(events: list[tuple[str | None, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    """The content blocks a stream adds up to (tool_use input parsed from partial_json)."""
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, str] = {}
    stop = None
    for _, data in events:
        kind = data["type"]
        if kind == "content_block_start":
            blocks[data["index"]] = dict(data["content_block"])
        elif kind == "content_block_delta":
            block, delta = blocks[data["index"]], data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] += delta["signature"]
            elif delta["type"] == "input_json_delta":
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        elif kind == "content_block_stop" and data["index"] in partial:
            blocks[data["index"]]["input"] = json.loads(partial[data["index"]])
        elif kind == "message_delta":
            stop = data["delta"]["stop_reason"]
    return [blocks[i] for i in sorted(blocks)], stop


def gemini_assemble(events: list[tuple[str | None, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    """Every part of every event, in order, and the last finishReason."""
    parts, finish = [], None
    for _, data in events:
        for candidate in data.get("candidates", []):
            parts += candidate["content"]["parts"]
            finish = candidate.get("finishReason") or finish
    return parts, finish
