"""Streamed chat completions as OpenAI's server-sent events.

Nothing is sent before the first token: until then RANA may still fall back, and a failure
is an ordinary HTTP error. Then the headers go out (provider, model, attempts so far), one
`chat.completion.chunk` per piece of text, a last chunk with the finish reason (and, with
`stream_options.include_usage`, a usage chunk), the `rana` object on the final chunk, and
`data: [DONE]`. A failure after the first token is sent in-band as `data: {"error": ...}`
with no [DONE], so no client mistakes a cut answer for a whole one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.api.errors import api_error
from gateway.api.http import SSE, ApiResponse
from gateway.api.params import ChatCall
from gateway.api.render import completion_id, rana_headers, rana_meta, result_meta, usage_json
from providers.types import CompletionStream, EngineError, StreamEvent, Usage

DONE = b"data: [DONE]\n\n"


class ChunkWriter:
    """Renders chunks with a fixed prefix: id, object, created, model, as OpenAI orders them."""

    def __init__(self, request_id, model: str, include_usage: bool, *, legacy: bool = False) -> None:
        head = {
            "id": completion_id(request_id),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
        }
        self._head = b"data: " + orjson.dumps(head)[:-1] + b',"choices":'
        self._tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"
        self.include_usage = include_usage
        self.legacy = legacy  # the request used `functions`: stream the first call as function_call

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None, logprobs: Any = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        return self._head + orjson.dumps([choice]) + self._tail

    def text(self, text: str) -> bytes:
        return (
            self._head
            + b'[{"index":0,"delta":{"content":'
            + orjson.dumps(text)
            + (b'},"logprobs":null,"finish_reason":null}]')
            + self._tail
        )

    def tool_calls(self, deltas) -> bytes:
        """Tool-call pieces as OpenAI streams them (the first piece of a call has id and name)."""
        if self.legacy:
            first = [d for d in deltas if d.index == 0]
            if not first:
                return b""
            function = {"arguments": "".join(d.arguments for d in first)}
            name = next((d.name for d in first if d.name is not None), None)
            if name is not None:
                function = {"name": name, **function}
            return self.delta({"function_call": function})
        pieces = []
        for d in deltas:
            piece: dict[str, Any] = {"index": d.index, "function": {"arguments": d.arguments}}
            if d.id is not None:
                piece["id"], piece["type"] = d.id, "function"
            if d.name is not None:
                piece["function"]["name"] = d.name
            pieces.append(piece)
        return self.delta({"tool_calls": pieces})

    def event(self, event: StreamEvent) -> bytes:
        """Text and/or tool-call pieces of one stream event (with its logprobs, when asked for)."""
        if event.refusal:
            return self.delta({"refusal": event.refusal})
        if event.logprobs is not None and event.text:
            out = self.delta({"content": event.text}, logprobs=event.logprobs)
            return out + (self.tool_calls(event.tool_calls) if event.tool_calls else b"")
        out = self.text(event.text) if event.text else b""
        return out + (self.tool_calls(event.tool_calls) if event.tool_calls else b"")

    def final(self, choices: list[dict[str, Any]], **fields: Any) -> bytes:
        body = orjson.dumps({"choices": choices, **fields})
        return self._head[:-10] + body[1:] + b"\n\n"


def _answering(completion: CompletionStream) -> tuple[str, str]:
    step = completion.answering
    return (step.provider_name, step.model) if step is not None else ("", "")


def stream_headers(completion: CompletionStream) -> list[tuple[str, str]]:
    """Headers known at the first token. The cost header counts the attempts that ended before
    it (`x-rana-cost-final: false`); the whole cost is in the final chunk's `rana` object."""
    attempts = completion.attempts
    provider, model = _answering(completion)
    answering = completion.answering
    step = answering if answering is not None and answering.position is not None else None
    first = attempts[0].step_position if attempts else None
    meta = rana_meta(
        request_id=completion.request_id,
        chain=completion.chain_slug,
        provider=provider,
        model=model,
        fallback=step is not None and first is not None and first != step.position,
        attempts=attempts,
        cost_usd=completion.cost_so_far,
        cache_hit=completion.cache_hit,
        route=completion.route,
    )
    meta["attempt_count"] += 1 if step is not None else 0  # the call being relayed
    return [
        ("content-type", SSE),
        ("cache-control", "no-cache"),
        ("x-accel-buffering", "no"),  # proxies must pass each event on at once
        *rana_headers(meta),
        ("x-rana-cost-final", "false"),
    ]


async def sse_events(
    completion: CompletionStream, first: StreamEvent, call: ChatCall
) -> AsyncIterator[bytes]:
    """The event stream after the first event; closes the upstream however it ends."""
    writer = ChunkWriter(
        completion.request_id, _answering(completion)[1], call.include_usage, legacy=call.legacy_functions
    )
    finish, usage = first.finish_reason, first.usage
    failure: EngineError | None = None
    try:
        yield writer.delta({"role": "assistant", "content": "", "refusal": None}) + writer.event(first)
        async for event in completion:
            if event.content:
                yield writer.event(event)
            finish, usage = event.finish_reason or finish, event.usage or usage
    except EngineError as exc:
        failure = exc
    finally:
        await completion.aclose()

    if failure is not None:
        error = api_error(failure, chain=completion.chain_slug).body()
        yield b"data: " + orjson.dumps(error) + b"\n\n"
        return
    yield _closing(writer, completion, finish, usage) + DONE


def _closing(writer: ChunkWriter, completion: CompletionStream, finish, usage: Usage | None) -> bytes:
    result = completion.result
    meta = result_meta(result) if result is not None else None
    if writer.legacy and finish == "tool_calls":
        finish = "function_call"
    done = [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish or "stop"}]
    if not writer.include_usage:
        return writer.final(done, rana=meta)
    usage_chunk = writer.final([], usage=usage_json(usage or Usage()), rana=meta)
    return writer.delta({}, finish or "stop") + usage_chunk


def stream_response(completion: CompletionStream, first: StreamEvent, call: ChatCall) -> ApiResponse:
    return ApiResponse(
        200,
        stream_headers(completion),
        stream=sse_events(completion, first, call),
        on_close=completion.aclose,
    )
