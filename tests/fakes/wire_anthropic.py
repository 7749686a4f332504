"""Anthropic answers assembled block by block, for shapes the scripted Faults do not render.

The Fault-driven renderers (wire.py, wire_tools.py) cover text, signed thinking, tool_use and
forced-JSON answers. Anthropic also sends blocks those cannot express: redacted_thinking
(encrypted reasoning, no deltas), and tool_use blocks whose arguments arrive in no
input_json_delta at all (a tool without arguments). Build the blocks here and answer with
them through `Fault.status`, in exactly the wire shape Anthropic uses:

    fake.script("anthropic", [stream_fault([redacted("EmwKAhgB"), text("Hi")])])
    fake.script("anthropic", [body_fault([redacted("EmwKAhgB"), text("Hi")])])
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .faults import DEFAULT_SIGNATURE, FakeUsage, Fault
from .wire import anthropic_usage, frame, pieces_of

_IDS = iter(range(1, 1_000_000))
USAGE = FakeUsage()


@dataclass(frozen=True, slots=True)
class Block:
    """One content block: its whole form (a JSON body), its opening form and its stream deltas."""

    whole: dict[str, Any]
    opening: dict[str, Any]
    deltas: tuple[dict[str, Any], ...] = field(default=())


def text(value: str) -> Block:
    deltas = tuple({"type": "text_delta", "text": p} for p in pieces_of(value))
    return Block({"type": "text", "text": value}, {"type": "text", "text": ""}, deltas)


def thinking(value: str, signature: str = DEFAULT_SIGNATURE) -> Block:
    deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces_of(value)]
    deltas.append({"type": "signature_delta", "signature": signature})
    whole = {"type": "thinking", "thinking": value, "signature": signature}
    return Block(whole, {"type": "thinking", "thinking": "", "signature": ""}, tuple(deltas))


def redacted(data: str) -> Block:
    """Encrypted reasoning: whole in its content_block_start, no deltas."""
    whole = {"type": "redacted_thinking", "data": data}
    return Block(whole, whole)


def tool_use(name: str, arguments: Any = None, *, fragments: tuple[str, ...] | None = None) -> Block:
    """A tool_use block; `fragments`: its input_json_delta pieces (() sends none at all,
    None splits the JSON of `arguments` in two after Anthropic's opening "")."""
    input_ = {} if arguments is None else arguments
    raw = json.dumps(input_)
    pieces = ("", raw[: len(raw) // 2], raw[len(raw) // 2 :]) if fragments is None else fragments
    head = {"type": "tool_use", "id": f"toolu_wire{next(_IDS):06d}", "name": name}
    deltas = tuple({"type": "input_json_delta", "partial_json": p} for p in pieces)
    return Block({**head, "input": input_}, {**head, "input": {}}, deltas)


def message(
    blocks: list[Block], stop_reason: str | None, usage: FakeUsage, model: str, content: list | None
) -> dict[str, Any]:
    return {
        "id": f"msg_wire{next(_IDS):08d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [b.whole for b in blocks] if content is None else content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": anthropic_usage(usage),
    }


def body_fault(
    blocks: list[Block], *, stop_reason: str = "end_turn", usage: FakeUsage = USAGE, model: str = "m"
) -> Fault:
    """A 200 Messages body with these blocks."""
    return Fault.status(200, json.dumps(message(blocks, stop_reason, usage, model, None)))


def stream_frames(
    blocks: list[Block], *, stop_reason: str = "end_turn", usage: FakeUsage = USAGE, model: str = "m"
) -> list[str]:
    """The event stream of a message with these blocks, message_start to message_stop."""
    start = message(blocks, None, usage, model, [])
    start["usage"] = anthropic_usage(usage, output=1)
    frames = [frame({"type": "message_start", "message": start}, event="message_start")]
    for index, block in enumerate(blocks):
        opening = {"type": "content_block_start", "index": index, "content_block": block.opening}
        frames.append(frame(opening, event="content_block_start"))
        for delta in block.deltas:
            frames.append(
                frame(
                    {"type": "content_block_delta", "index": index, "delta": delta},
                    event="content_block_delta",
                )
            )
        frames.append(frame({"type": "content_block_stop", "index": index}, event="content_block_stop"))
    end = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": usage.output},
    }
    frames.append(frame(end, event="message_delta"))
    frames.append(frame({"type": "message_stop"}, event="message_stop"))
    return frames


def stream_fault(
    blocks: list[Block], *, stop_reason: str = "end_turn", usage: FakeUsage = USAGE, model: str = "m"
) -> Fault:
    """A 200 event stream of a message with these blocks (sent in one body)."""
    sse = "".join(stream_frames(blocks, stop_reason=stop_reason, usage=usage, model=model))
    return Fault.status(200, sse, content_type="text/event-stream; charset=utf-8")
