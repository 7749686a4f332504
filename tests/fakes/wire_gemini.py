"""Hand-made Gemini streams, for what a Reply cannot say: function calls split across events.

wire_tools renders a Reply's calls whole in the last event. Gemini may also send them one per
event, or mixed with text; a test builds such a stream chunk by chunk and scripts it:

    fake.script("gemini", [stream_fault(
        chunk([{"text": "Checking."}]),
        chunk([function_call("get_weather", {"city": "Paris"})]),
        chunk([function_call("get_time", {})], finish="STOP", usage=FakeUsage(30, 9)),
    )])

Each chunk is a whole GenerateContentResponse, framed with CRLF as Gemini frames them.
"""

from __future__ import annotations

import json
from typing import Any

from .faults import FakeUsage, Fault
from .wire import frame, gemini_usage


def function_call(
    name: str, args: dict[str, Any], *, id: str | None = None, signature: str | None = None
) -> dict[str, Any]:
    """A functionCall part (id: newer models number their calls; signature: thoughtSignature)."""
    call: dict[str, Any] = {"name": name, "args": args}
    part: dict[str, Any] = {"functionCall": {"id": id, **call} if id else call}
    if signature:
        part["thoughtSignature"] = signature
    return part


def chunk(
    parts: list[dict[str, Any]],
    *,
    finish: str | None = None,
    usage: FakeUsage | None = None,
    model: str = "gemini-2.5-flash",
    response_id: str = "resp-gemini-hand-1",
) -> dict[str, Any]:
    """One stream event; usage (if given) is final when the chunk carries a finishReason."""
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish:
        candidate["finishReason"] = finish
    candidate["index"] = 0
    body: dict[str, Any] = {"candidates": [candidate]}
    if usage is not None:
        body["usageMetadata"] = gemini_usage(usage, final=finish is not None)
    return {**body, "modelVersion": model, "responseId": response_id}


def sse(chunks: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> str:
    return "".join(frame(c, eol="\r\n") for c in chunks)


def stream_fault(*chunks: dict[str, Any]) -> Fault:
    """A 200 event stream made of exactly these chunks (for streaming requests)."""
    return Fault.status(200, sse(chunks), content_type="text/event-stream; charset=utf-8")


def body_fault(payload: dict[str, Any]) -> Fault:
    """A 200 generateContent body exactly as given (for non-streaming requests)."""
    return Fault.status(200, json.dumps(payload))
