"""Tool calls, thinking and forced-JSON tools, in each protocol's own wire shape.

A Reply without any of them renders exactly as wire.py does; with them:
- OpenAI: message.tool_calls (content null when there is no text); streamed as
  delta.tool_calls, one call after the other, each first with its id and name and empty
  arguments, then its arguments in arg_pieces fragments. Reasoning is only counted
  (usage.completion_tokens_details.reasoning_tokens), never sent as text.
- Anthropic: content blocks thinking, text, tool_use (in that order); streamed as one
  content_block_start / content_block_delta… / content_block_stop run per block
  (thinking_delta + signature_delta, text_delta, input_json_delta).
- Gemini: parts {"text", "thought": true}, {"text"}, {"functionCall": {"name", "args"}};
  a stream sends each thought piece and text piece as an event and every function call
  whole in the last event, which carries finishReason and usageMetadata.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from . import wire
from .faults import DEFAULT_SIGNATURE, FakeToolCall, split_evenly
from .wire import (
    FINISH,
    Reply,
    StreamParts,
    _anthropic_message,
    _gemini_response,
    _openai_chunk,
    anthropic_body,
    anthropic_usage,
    frame,
    gemini_body,
    openai_body,
    openai_stream,
    pieces_of,
)


def has_extras(r: Reply) -> bool:
    return bool(r.calls) or r.thinking is not None or r.json_tool is not None


def call_id(r: Reply, index: int, call: FakeToolCall, prefix: str) -> str:
    return call.id or f"{prefix}fake{r.response_id[-8:]}{index:02d}"


def arguments_object(call: FakeToolCall) -> dict[str, Any]:
    value = json.loads(call.arguments)
    if not isinstance(value, dict):
        raise ValueError(f"tool call {call.name!r}: this protocol needs arguments that are a JSON object")
    return value


# --- OpenAI -----------------------------------------------------------------------------
def openai_tool_calls(r: Reply) -> list[dict[str, Any]]:
    return [
        {
            "id": call_id(r, i, c, "call_"),
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        for i, c in enumerate(r.calls)
    ]


def openai_tool_deltas(r: Reply) -> list[dict[str, Any]]:
    """One delta per stream event: each call's head (id, name, ""), then its argument fragments."""
    deltas: list[dict[str, Any]] = []
    for i, (c, whole) in enumerate(zip(r.calls, openai_tool_calls(r), strict=True)):
        deltas.append({"tool_calls": [{"index": i, **whole, "function": {"name": c.name, "arguments": ""}}]})
        for piece in split_evenly(c.arguments, r.arg_pieces):
            deltas.append({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
    return deltas


def openai_rich_body(r: Reply) -> dict[str, Any]:
    body = openai_body(r)
    if r.calls:
        message = body["choices"][0]["message"]
        body["choices"][0]["message"] = {
            "role": "assistant",
            "content": r.text or None,
            "tool_calls": openai_tool_calls(r),
            "refusal": None,
            "annotations": message["annotations"],
        }
    return body


def openai_rich_stream(r: Reply) -> StreamParts:
    parts = openai_stream(r)
    deltas = openai_tool_deltas(r)
    if not deltas:
        return parts
    if not r.text:  # the role and the first call's head arrive together, content null
        head = {"role": "assistant", "content": None, **deltas[0], "refusal": None}
        parts.prelude = [_openai_chunk(r, head, None)]
        deltas = deltas[1:]
    parts.content += [_openai_chunk(r, delta, None) for delta in deltas]
    return parts


# --- Anthropic --------------------------------------------------------------------------
def anthropic_view(r: Reply) -> Reply:
    """A forced-tool JSON answer: the JSON text becomes one tool_use block's input."""
    if r.json_tool is None:
        return r
    call = FakeToolCall(r.json_tool, r.text)
    return replace(r, text="", pieces=(), calls=(call, *r.calls), finish="tool_calls")


def anthropic_blocks(r: Reply) -> list[tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]]:
    """Each content block: (whole block, its stream deltas, its content_block_start form)."""
    blocks = []
    if r.thinking is not None:
        signature = r.signature or DEFAULT_SIGNATURE
        deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces_of(r.thinking)]
        deltas.append({"type": "signature_delta", "signature": signature})
        whole = {"type": "thinking", "thinking": r.thinking, "signature": signature}
        blocks.append((whole, deltas, {"type": "thinking", "thinking": "", "signature": ""}))
    if r.text or not r.calls:
        deltas = [{"type": "text_delta", "text": p} for p in r.pieces]
        blocks.append(({"type": "text", "text": r.text}, deltas, {"type": "text", "text": ""}))
    for i, c in enumerate(r.calls):
        head = {"type": "tool_use", "id": call_id(r, i, c, "toolu_"), "name": c.name}
        pieces = ("", *split_evenly(c.arguments, r.arg_pieces))  # Anthropic opens with ""
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        blocks.append(({**head, "input": _input_or_raw(c)}, deltas, {**head, "input": {}}))
    return blocks


def _input_or_raw(c: FakeToolCall) -> Any:
    """Only the non-streamed body needs the object; streams send the raw text."""
    try:
        return arguments_object(c)
    except ValueError:
        return None


def anthropic_rich_body(r: Reply) -> dict[str, Any]:
    r = anthropic_view(r)
    body = anthropic_body(r)
    content = [whole for whole, _, _ in anthropic_blocks(r) if whole["type"] != "text" or whole["text"]]
    for block in content:
        if block["type"] == "tool_use" and block["input"] is None:
            raise ValueError(f"tool call {block['name']!r}: Anthropic needs arguments that are a JSON object")
    body["content"] = content
    return body


def anthropic_rich_stream(r: Reply) -> StreamParts:
    r = anthropic_view(r)
    start = _anthropic_message(r, [], None, anthropic_usage(r.usage, output=1))
    events: list[str] = []
    for index, (_, deltas, opening) in enumerate(anthropic_blocks(r)):
        if index:
            events.append(
                frame({"type": "content_block_stop", "index": index - 1}, event="content_block_stop")
            )
        block = {"type": "content_block_start", "index": index, "content_block": opening}
        events.append(frame(block, event="content_block_start"))
        if not index:
            events.append(frame({"type": "ping"}, event="ping"))
        for delta in deltas:
            payload = {"type": "content_block_delta", "index": index, "delta": delta}
            events.append(frame(payload, event="content_block_delta"))
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": FINISH["anthropic"][r.finish], "stop_sequence": None},
        "usage": {"output_tokens": r.usage.output},
    }
    last = len(anthropic_blocks(r)) - 1
    return StreamParts(
        prelude=[frame({"type": "message_start", "message": start}, event="message_start"), *events[:2]],
        content=events[2:],
        ending=[
            frame({"type": "content_block_stop", "index": last}, event="content_block_stop"),
            frame(message_delta, event="message_delta"),
            frame({"type": "message_stop"}, event="message_stop"),
        ],
    )


# --- Gemini -----------------------------------------------------------------------------
def gemini_call_parts(r: Reply) -> list[dict[str, Any]]:
    parts = []
    for i, c in enumerate(r.calls):
        call: dict[str, Any] = {"name": c.name, "args": arguments_object(c)}
        if c.id:  # newer models number their calls; older ones send no id
            call = {"id": c.id, **call}
        part: dict[str, Any] = {"functionCall": call}
        if i == 0 and r.signature:
            part["thoughtSignature"] = r.signature
        parts.append(part)
    return parts


def _with_parts(body: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
    body["candidates"][0]["content"]["parts"] = parts or [{"text": ""}]
    return body


def gemini_rich_body(r: Reply) -> dict[str, Any]:
    parts = [{"text": r.thinking, "thought": True}] if r.thinking is not None else []
    parts += [{"text": r.text}] if r.text or not r.calls else []
    return _with_parts(gemini_body(r), parts + gemini_call_parts(r))


def gemini_rich_stream(r: Reply) -> StreamParts:
    events = [[{"text": p, "thought": True}] for p in pieces_of(r.thinking or "")]
    texts = [[{"text": p}] for p in r.pieces]
    calls = gemini_call_parts(r)
    if calls:
        events += texts
        last = calls
    else:
        events += texts[:-1]
        last = texts[-1] if texts else [{"text": ""}]
    parts = StreamParts()
    for event in events:
        parts.content.append(
            frame(_with_parts(_gemini_response(r, "", None, final=False), event), eol="\r\n")
        )
    final = _gemini_response(r, "", FINISH["gemini"][r.finish], final=True)
    parts.ending.append(frame(_with_parts(final, last), eol="\r\n"))
    return parts


# --- dispatch (what player.py uses) -----------------------------------------------------
_RICH_BODY = {"openai": openai_rich_body, "anthropic": anthropic_rich_body, "gemini": gemini_rich_body}
_RICH_STREAM = {
    "openai": openai_rich_stream,
    "anthropic": anthropic_rich_stream,
    "gemini": gemini_rich_stream,
}


def _body(protocol: str) -> Callable[[Reply], dict[str, Any]]:
    return lambda r: (_RICH_BODY if has_extras(r) else wire.SUCCESS_BODY)[protocol](r)


def _stream(protocol: str) -> Callable[[Reply], StreamParts]:
    return lambda r: (_RICH_STREAM if has_extras(r) else wire.STREAM)[protocol](r)


SUCCESS_BODY = {p: _body(p) for p in wire.SUCCESS_BODY}
STREAM = {p: _stream(p) for p in wire.STREAM}
