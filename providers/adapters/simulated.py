"""The simulated provider: an offline demo upstream with injectable faults. No network.

Options (the provider's JSON `options`; bad values fall back to the defaults):
- latency_ms (50): time to a whole answer; for a stream, spread over the chunks.
- ttft_ms: time to the first chunk of a stream (default: an even share of latency_ms).
- tokens_per_s: stream pace instead of latency_ms; chunks: how many chunks (default: one
  per word).
- failure_rate (0..1) and failure_kinds (["server_error"]): each call fails with that
  probability, as one of the kinds (any failure class except circuit_open,
  stream_interrupted and cancelled; unknown names are ignored). rate_limited carries
  status 429 and retry_after_s (option, default 1); server_error is a 503. A "timeout"
  failure is raised after the latency: use `hang` to really wait for the read timeout.
- down: every call fails at once with connection_error "connection refused".
- hang: sleeps for the read timeout, then raises timeout.
- interrupt_after: a stream fails with connection_error after that many chunks.
- input_tokens, output_tokens, cached_tokens: the usage to report (as a real provider would,
  e.g. for a synthetic ledger) instead of the estimate from the text; a stream cut mid-answer
  reports the share of output_tokens it sent.
- seed: failure draws become reproducible: the n-th call for the same provider, model,
  seed and messages always draws the same number (so "the same prompt, attempt n" behaves
  the same on every run). Without a seed the adapter's own Random is used (injectable).

Text is derived from the prompt (it echoes the last user message); token counts are
ceil(words * 1.3) unless given as options; max_tokens truncates the answer with finish_reason "length".
Tools, JSON formats and images are answered as simulated_answers.py says (a tool call with
arguments made from the tool's schema, JSON that matches the requested schema).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from providers.engine.types import (
    ChatRequest,
    ChatResponse,
    FailureClass,
    ProviderError,
    StreamEvent,
    ToolCallDelta,
    Usage,
)

from .simulated_answers import shaped_text, tool_call

_NOT_INJECTABLE = {FailureClass.CIRCUIT_OPEN, FailureClass.STREAM_INTERRUPTED, FailureClass.CANCELLED}
INJECTABLE = tuple(kind for kind in FailureClass if kind not in _NOT_INJECTABLE)
_STATUS = {
    FailureClass.RATE_LIMITED: 429,
    FailureClass.QUOTA_EXHAUSTED: 429,
    FailureClass.SERVER_ERROR: 503,
    FailureClass.AUTH_ERROR: 401,
    FailureClass.CONTEXT_LENGTH: 400,
    FailureClass.CONTENT_FILTER: 400,
    FailureClass.INVALID_REQUEST: 400,
}
Sleep = Callable[[float], Awaitable[None]]


def _number(options: Mapping[str, Any], name: str, default: float | None) -> float | None:
    value = options.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return default
    try:
        number = float(value)
    except ValueError:
        return default
    return number if math.isfinite(number) and number >= 0 else default


def _flag(options: Mapping[str, Any], name: str) -> bool:
    value = options.get(name)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _kinds(value: Any) -> tuple[FailureClass, ...]:
    names = [value] if isinstance(value, str) else value if isinstance(value, list | tuple) else []
    kinds = tuple(FailureClass(n) for n in names if isinstance(n, str) and n in INJECTABLE)
    return kinds or (FailureClass.SERVER_ERROR,)


@dataclass(frozen=True, slots=True)
class SimOptions:
    latency_s: float = 0.05
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    chunks: int | None = None
    failure_rate: float = 0.0
    failure_kinds: tuple[FailureClass, ...] = (FailureClass.SERVER_ERROR,)
    retry_after_s: float = 1.0
    down: bool = False
    hang: bool = False
    interrupt_after: int | None = None
    seed: int | None = None
    usage: Usage | None = None  # reported instead of the estimate

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> SimOptions:
        ttft_ms = _number(options, "ttft_ms", None)
        chunks = _number(options, "chunks", None)
        interrupt = _number(options, "interrupt_after", None)
        seed = options.get("seed")
        return cls(
            latency_s=(_number(options, "latency_ms", 50.0) or 0.0) / 1000,
            ttft_s=None if ttft_ms is None else ttft_ms / 1000,
            tokens_per_s=_number(options, "tokens_per_s", None) or None,
            chunks=int(chunks) if chunks else None,
            failure_rate=min(1.0, _number(options, "failure_rate", 0.0) or 0.0),
            failure_kinds=_kinds(options.get("failure_kinds")),
            retry_after_s=_number(options, "retry_after_s", 1.0) or 0.0,
            down=_flag(options, "down"),
            hang=_flag(options, "hang"),
            interrupt_after=None if interrupt is None else int(interrupt),
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            usage=_given_usage(options),
        )


def _given_usage(options: Mapping[str, Any]) -> Usage | None:
    names = ("input_tokens", "output_tokens", "cached_tokens")
    given = [_number(options, name, None) for name in names]
    if given[0] is None and given[1] is None:
        return None
    return Usage(*(int(value or 0) for value in given))


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text.split()) * 1.3)


def reply(request: ChatRequest) -> tuple[str, str]:
    """The deterministic answer to a request, and its finish reason."""
    asked = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    words = asked.split()
    echo = " ".join(words[:40]) + (" …" if len(words) > 40 else "")
    name = request.provider.name or "simulated"
    text = f"Simulated answer from {name} ({request.model}). You said: {echo or '(nothing)'}"
    limit = request.params.max_tokens
    if limit is not None and estimate_tokens(text) > limit:
        return " ".join(text.split()[: max(1, int(limit / 1.3))]), "length"
    return text, "stop"


def _usage(request: ChatRequest, text: str, opts: SimOptions, full_text: str | None = None) -> Usage:
    """The usage estimated from the text, or the given one (for the share of full_text sent)."""
    given = opts.usage
    if given is None:
        prompt = " ".join(m.content for m in request.messages)
        return Usage(input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(text))
    share = 1.0 if full_text is None else len(text) / max(1, len(full_text))
    return Usage(given.input_tokens, math.ceil(given.output_tokens * share), given.cached_tokens)


def _pieces(text: str, chunks: int | None) -> list[str]:
    words = text.split(" ")
    pieces = [w + " " for w in words[:-1]] + [words[-1]]
    if not chunks or chunks >= len(pieces):
        return pieces
    size = math.ceil(len(pieces) / chunks)
    return ["".join(pieces[i : i + size]) for i in range(0, len(pieces), size)]


class SimulatedAdapter:
    kind = "simulated"
    capabilities = frozenset({"tools", "parallel_tools", "images", "json_object", "json_schema", "reasoning"})

    def __init__(self, rng: random.Random | None = None, sleep: Sleep = asyncio.sleep) -> None:
        self.rng = rng or random.Random()  # fault injection, not security
        self.sleep = sleep
        self._calls: dict[str, int] = {}

    def reset(self) -> None:
        """Forget how many seeded calls were made (tests start each run from attempt 1)."""
        self._calls.clear()

    def _draw_rng(self, request: ChatRequest, opts: SimOptions) -> random.Random:
        if opts.seed is None:
            return self.rng
        prompt = "\x1e".join(f"{m.role}:{m.content}" for m in request.messages)
        identity = f"{opts.seed}|{request.provider.name}|{request.model}|{prompt}"
        key = hashlib.sha256(identity.encode()).hexdigest()
        if len(self._calls) > 10_000:
            self._calls.clear()
        attempt = self._calls.get(key, 0)
        self._calls[key] = attempt + 1
        return random.Random(f"{key}:{attempt}")

    def _failure(self, request: ChatRequest, opts: SimOptions) -> ProviderError | None:
        if opts.failure_rate <= 0:
            return None
        rng = self._draw_rng(request, opts)
        if rng.random() >= opts.failure_rate:
            return None
        kind = opts.failure_kinds[int(rng.random() * len(opts.failure_kinds))]
        retry_after = opts.retry_after_s if kind == FailureClass.RATE_LIMITED else None
        return ProviderError(
            kind, f"simulated {kind.value}", status=_STATUS.get(kind), retry_after_s=retry_after
        )

    async def _before_answer(self, request: ChatRequest, opts: SimOptions, wait_s: float) -> None:
        """Down, hang, or an injected failure: raise it (after the wait it would take)."""
        if opts.down:
            raise ProviderError(
                FailureClass.CONNECTION_ERROR, "connection refused (the simulated provider is down)"
            )
        if opts.hang:
            await self.sleep(request.timeouts.read_s)
            raise ProviderError(FailureClass.TIMEOUT, "read timeout: the simulated provider hangs")
        failure = self._failure(request, opts)
        await self.sleep(wait_s)
        if failure is not None:
            raise failure

    async def complete(self, request: ChatRequest, client: httpx.AsyncClient | None = None) -> ChatResponse:
        opts = SimOptions.parse(request.provider.options)
        await self._before_answer(request, opts, opts.latency_s)
        call = tool_call(request)
        text, finish_reason = ("", "tool_calls") if call else reply(request)
        text = text if call else shaped_text(request, text)
        digest = hashlib.sha256((text or call.arguments).encode()).hexdigest()[:16]
        usage = _usage(request, text or call.arguments, opts)
        calls = (call,) if call else ()
        return ChatResponse(text, finish_reason, usage, request.model, f"sim-{digest}", tool_calls=calls)

    def _delays(self, opts: SimOptions, pieces: list[str]) -> tuple[float, float]:
        """Time to the first chunk, and between chunks."""
        if opts.tokens_per_s:
            per_chunk = estimate_tokens(" ".join(pieces)) / len(pieces) / opts.tokens_per_s
            return (opts.ttft_s if opts.ttft_s is not None else per_chunk), per_chunk
        first = opts.ttft_s if opts.ttft_s is not None else opts.latency_s / (len(pieces) + 1)
        return first, max(0.0, opts.latency_s - first) / max(1, len(pieces) - 1)

    async def stream(
        self, request: ChatRequest, client: httpx.AsyncClient | None = None
    ) -> AsyncIterator[StreamEvent]:
        opts = SimOptions.parse(request.provider.options)
        call = tool_call(request)
        if call is not None:
            async for event in self._stream_call(request, opts, call):
                yield event
            return
        text, finish_reason = reply(request)
        text = shaped_text(request, text)
        pieces = _pieces(text, opts.chunks)
        first, between = self._delays(opts, pieces)
        await self._before_answer(request, opts, first)
        sent: list[str] = []
        for index, piece in enumerate(pieces):
            if index:
                await self.sleep(between)
            if opts.interrupt_after is not None and index >= opts.interrupt_after:
                raise ProviderError(
                    FailureClass.CONNECTION_ERROR,
                    "the simulated stream was cut mid-answer",
                    usage=_usage(request, "".join(sent), opts, text),
                )
            sent.append(piece)
            yield StreamEvent(text=piece)
        yield StreamEvent(finish_reason=finish_reason, usage=_usage(request, text, opts))

    async def _stream_call(self, request: ChatRequest, opts: SimOptions, call) -> AsyncIterator[StreamEvent]:
        """A tool call as OpenAI streams it: id and name first, then the arguments in pieces."""
        pieces = _pieces(call.arguments, opts.chunks or 3)
        first, between = self._delays(opts, pieces)
        await self._before_answer(request, opts, first)
        yield StreamEvent(tool_calls=(ToolCallDelta(0, id=call.id, name=call.name),))
        for piece in pieces:
            await self.sleep(between)
            yield StreamEvent(tool_calls=(ToolCallDelta(0, arguments=piece),))
        yield StreamEvent(finish_reason="tool_calls", usage=_usage(request, call.arguments, opts))


ADAPTERS = (SimulatedAdapter(),)
