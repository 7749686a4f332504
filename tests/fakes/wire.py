"""Success bodies and event streams, exactly as OpenAI, Anthropic and Gemini shape them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .faults import FakeToolCall, FakeUsage

FINISH = {
    "openai": {
        "stop": "stop",
        "length": "length",
        "content_filter": "content_filter",
        "tool_calls": "tool_calls",
    },
    "anthropic": {
        "stop": "end_turn",
        "length": "max_tokens",
        "content_filter": "refusal",
        "tool_calls": "tool_use",
    },
    "gemini": {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY", "tool_calls": "STOP"},
}


@dataclass(frozen=True, slots=True)
class Reply:
    """Everything one answer is made of."""

    protocol: str
    model: str
    text: str
    pieces: tuple[str, ...]
    usage: FakeUsage
    finish: str
    response_id: str
    created: int
    include_usage: bool = False  # OpenAI: stream_options.include_usage was asked for
    api_key: str = ""  # the key the client sent (auth errors echo it)
    # rendered by wire_tools.py:
    calls: tuple[FakeToolCall, ...] = ()
    arg_pieces: int = 3
    thinking: str | None = None
    signature: str | None = None
    json_tool: str | None = None
    # OpenAI: what the request asked for beyond one plain answer
    choices: int = 1  # n: every choice after the first is the text with " (choice i)" after it
    logprobs: bool = False  # a logprob for every piece (top_logprobs alternatives when asked)
    top_logprobs: int = 0
    refusal: str | None = None  # OpenAI: message.refusal instead of content


def openai_logprobs(r: Reply, pieces: tuple[str, ...]) -> dict[str, Any] | None:
    """OpenAI's choice logprobs for these pieces (one token each), or None when not asked for."""
    if not r.logprobs:
        return None
    content = []
    for i, piece in enumerate(pieces):
        top = [{"token": piece, "logprob": -0.01 * (i + 1), "bytes": list(piece.encode())}]
        top += [
            {"token": f"alt{k}", "logprob": -2.0 - k, "bytes": list(f"alt{k}".encode())}
            for k in range(1, r.top_logprobs)
        ]
        content.append({**top[0], "top_logprobs": top[: r.top_logprobs]})
    return {"content": content, "refusal": None}


@dataclass(slots=True)
class StreamParts:
    """SSE frames: before the content, one per text delta, and the end (marker included)."""

    prelude: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    ending: list[str] = field(default_factory=list)

    def full(self) -> list[str]:
        return self.prelude + self.content + self.ending

    def partial(self, content_events: int) -> list[str]:
        return self.prelude + self.content[:content_events]


def frame(payload: Any, *, event: str | None = None, eol: str = "\n") -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    head = f"event: {event}{eol}" if event else ""
    return f"{head}data: {data}{eol}{eol}"


def pieces_of(text: str) -> tuple[str, ...]:
    """Text as stream deltas: words, each after the first with its leading space."""
    words = text.split(" ")
    return tuple([words[0]] + [" " + w for w in words[1:]]) if text else ()


# --- OpenAI -----------------------------------------------------------------------------
def openai_usage(u: FakeUsage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input,
        "completion_tokens": u.output,
        "total_tokens": u.input + u.output,
        "prompt_tokens_details": {"cached_tokens": u.cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _openai_base(r: Reply, obj: str) -> dict[str, Any]:
    return {
        "id": r.response_id,
        "object": obj,
        "created": r.created,
        "model": r.model,
        "service_tier": "default",
        "system_fingerprint": "fp_fake0001",
    }


def openai_body(r: Reply, *, with_choices: bool = True) -> dict[str, Any]:
    choices = []
    for index in range(r.choices):
        text = r.text if index == 0 else f"{r.text} (choice {index})"
        message = {"role": "assistant", "content": text or None, "refusal": r.refusal, "annotations": []}
        logprobs = openai_logprobs(r, pieces_of(text))
        finish = FINISH["openai"][r.finish]
        choices.append({"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish})
    return {
        **_openai_base(r, "chat.completion"),
        "choices": choices if with_choices else [],
        "usage": openai_usage(r.usage),
    }


def _openai_chunk(r: Reply, delta: dict[str, Any], finish: str | None, logprobs: Any = None) -> str:
    choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
    chunk = {**_openai_base(r, "chat.completion.chunk"), "choices": [choice]}
    if r.include_usage:
        chunk["usage"] = None
    return frame(chunk)


def openai_stream(r: Reply) -> StreamParts:
    parts = StreamParts(
        prelude=[_openai_chunk(r, {"role": "assistant", "content": "", "refusal": None}, None)]
    )
    parts.content = [
        _openai_chunk(r, {"content": piece}, None, openai_logprobs(r, (piece,))) for piece in r.pieces
    ]
    if r.refusal:
        parts.content += [_openai_chunk(r, {"refusal": piece}, None) for piece in pieces_of(r.refusal)]
    parts.ending.append(_openai_chunk(r, {}, FINISH["openai"][r.finish]))
    if r.include_usage:
        usage_chunk = {
            **_openai_base(r, "chat.completion.chunk"),
            "choices": [],
            "usage": openai_usage(r.usage),
        }
        parts.ending.append(frame(usage_chunk))
    parts.ending.append(frame("[DONE]"))
    return parts


# --- Anthropic --------------------------------------------------------------------------
def anthropic_usage(u: FakeUsage, *, output: int | None = None) -> dict[str, Any]:
    return {
        "input_tokens": u.input - u.cached - u.cache_creation,
        "cache_creation_input_tokens": u.cache_creation,
        "cache_read_input_tokens": u.cached,
        "output_tokens": u.output if output is None else output,
        "service_tier": "standard",
    }


def _anthropic_message(r: Reply, content: list[dict[str, Any]] | None, stop: str | None, usage: dict) -> dict:
    message: dict[str, Any] = {"id": r.response_id, "type": "message", "role": "assistant", "model": r.model}
    if content is not None:
        message["content"] = content
    return {**message, "stop_reason": stop, "stop_sequence": None, "usage": usage}


def anthropic_body(r: Reply, *, with_content: bool = True) -> dict[str, Any]:
    content = ([{"type": "text", "text": r.text}] if r.text else []) if with_content else None
    return _anthropic_message(r, content, FINISH["anthropic"][r.finish], anthropic_usage(r.usage))


def anthropic_stream(r: Reply) -> StreamParts:
    start = _anthropic_message(r, [], None, anthropic_usage(r.usage, output=1))
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    parts = StreamParts(
        prelude=[
            frame({"type": "message_start", "message": start}, event="message_start"),
            frame(block, event="content_block_start"),
            frame({"type": "ping"}, event="ping"),
        ]
    )
    for piece in r.pieces:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        parts.content.append(frame(delta, event="content_block_delta"))
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": FINISH["anthropic"][r.finish], "stop_sequence": None},
        "usage": {"output_tokens": r.usage.output},
    }
    parts.ending = [
        frame({"type": "content_block_stop", "index": 0}, event="content_block_stop"),
        frame(message_delta, event="message_delta"),
        frame({"type": "message_stop"}, event="message_stop"),
    ]
    return parts


# --- Gemini -----------------------------------------------------------------------------
def gemini_usage(u: FakeUsage, *, final: bool = True) -> dict[str, Any]:
    usage: dict[str, Any] = {"promptTokenCount": u.input}
    if final:
        usage["candidatesTokenCount"] = u.output - u.reasoning
    usage["totalTokenCount"] = u.input + (u.output if final else 0)
    if u.cached:
        usage["cachedContentTokenCount"] = u.cached
    if final and u.reasoning:
        usage["thoughtsTokenCount"] = u.reasoning
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": u.input}]
    return usage


def _gemini_response(r: Reply, text: str | None, finish: str | None, *, final: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text or ""}], "role": "model"}}
    if finish:
        candidate["finishReason"] = finish
    candidate["index"] = 0
    body: dict[str, Any] = {"candidates": [candidate]} if text is not None else {}
    body["usageMetadata"] = gemini_usage(r.usage, final=final)
    return {**body, "modelVersion": r.model, "responseId": r.response_id}


def gemini_body(r: Reply, *, with_candidates: bool = True) -> dict[str, Any]:
    return _gemini_response(r, r.text if with_candidates else None, FINISH["gemini"][r.finish], final=True)


def gemini_blocked(r: Reply) -> dict[str, Any]:
    ratings = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]
    feedback = {"blockReason": "SAFETY", "safetyRatings": ratings}
    return {"promptFeedback": feedback, "usageMetadata": gemini_usage(r.usage), "modelVersion": r.model}


def gemini_stream(r: Reply) -> StreamParts:
    """Gemini sends CRLF-framed events; the last text delta carries finishReason and usage."""
    pieces = list(r.pieces) or [""]
    parts = StreamParts()
    for piece in pieces[:-1]:
        parts.content.append(frame(_gemini_response(r, piece, None, final=False), eol="\r\n"))
    last = _gemini_response(r, pieces[-1], FINISH["gemini"][r.finish], final=True)
    parts.ending.append(frame(last, eol="\r\n"))
    return parts


SUCCESS_BODY = {"openai": openai_body, "anthropic": anthropic_body, "gemini": gemini_body}
STREAM = {"openai": openai_stream, "anthropic": anthropic_stream, "gemini": gemini_stream}
