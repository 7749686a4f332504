"""Streaming: fall back freely until the first token, never after it.

The walk (fallback.Walk) treats "open the stream and wait for its first content chunk" as
one attempt, bounded by the step's first-token timeout, so anything that goes wrong before
the first token (an error, that timeout, a stream that ends empty) is retried or falls back
like a non-streaming failure. Nothing reaches the consumer before that first chunk.

After it, the stream belongs to the consumer:

* A cut (ProviderError), any other error, or a stall (no event within the step's idle
  timeout, counted from when the consumer asks for the next event, so a slow consumer is
  not a stall) ends iteration with StreamInterrupted. The attempt is recorded as
  ``stream_interrupted`` and billed: the error's usage when the adapter gave one, else the
  usage events seen so far, with output tokens estimated at one token per four characters
  of received text and, if no input count was seen, input tokens estimated the same way
  from the prompt. Estimated usage is marked in the attempt's error message.
* The overall deadline still holds: a stream still running at the deadline is interrupted.
* A stream that ends cleanly but whose whole answer is not what was asked (not JSON, breaks
  the json_schema, tool arguments that are not a JSON object: engine/validation.py) is
  recorded as ``bad_response`` and ends with StreamInterrupted: it was relayed, so it cannot
  fall back, but it is never reported as a success.
* ``aclose()`` or cancelling the consuming task closes the upstream at once and records the
  attempt as ``cancelled`` (partial usage billed the same way), with no fallback and nothing
  told to the circuit breaker. ``aclose()`` before iteration starts records nothing.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from .clock import Clock
from .plan import StepPlan, seconds_text
from .results import SUCCESS, EngineResult, StreamInterrupted
from .types import (
    ChatRequest,
    ChatResponse,
    FailureClass,
    Message,
    ProviderError,
    StreamEvent,
    ToolCall,
    Usage,
)
from .validation import answer_problem

if TYPE_CHECKING:
    from providers.adapters.base import Adapter

    from .fallback import Walk, Won

log = logging.getLogger("rana.engine")

CHARS_PER_TOKEN = 4


@dataclass(slots=True)
class OpenedStream:
    upstream: AsyncIterator[StreamEvent]
    head: list[StreamEvent]  # every event up to and including the first one with content
    ttft_ms: float


async def open_stream(
    adapter: Adapter, request: ChatRequest, client: httpx.AsyncClient | None, clock: Clock
) -> OpenedStream:
    """Start one upstream stream and wait for its first content chunk (the walk bounds the wait)."""
    t0 = clock.monotonic()
    upstream = adapter.stream(request, client)  # type: ignore[arg-type]
    head: list[StreamEvent] = []
    try:
        async for event in upstream:
            head.append(event)
            if event.content:
                return OpenedStream(upstream, head, (clock.monotonic() - t0) * 1000)
    except BaseException:  # a timeout reaches here as a cancellation
        await close_quietly(upstream)
        raise
    raise ProviderError(FailureClass.BAD_RESPONSE, "stream ended before any content")


async def close_quietly(upstream: Any) -> None:
    aclose = getattr(upstream, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception:
        log.debug("closing an upstream stream failed", exc_info=True)


def unexpected_error(exc: BaseException) -> ProviderError:
    """An adapter broke its contract (raised something other than ProviderError)."""
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(FailureClass.TIMEOUT, f"timeout: {type(exc).__name__}")
    if isinstance(exc, httpx.TransportError):
        return ProviderError(FailureClass.CONNECTION_ERROR, f"connection error: {type(exc).__name__}")
    return ProviderError(FailureClass.BAD_RESPONSE, f"adapter error: {type(exc).__name__}")


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(slots=True)
class StreamTally:
    """What a stream has delivered so far."""

    parts: list[str] = field(default_factory=list)
    usage: Usage | None = None  # field-wise max over usage events (cumulative or split reports)
    finish_reason: str | None = None
    calls: dict[int, list[str]] = field(default_factory=dict)  # index -> [id, name, arguments]
    refusal: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(ToolCall(*self.calls[i]) for i in sorted(self.calls))

    def add(self, event: StreamEvent) -> None:
        if event.text:
            self.parts.append(event.text)
        if event.refusal:
            self.refusal.append(event.refusal)
        for delta in event.tool_calls:
            call = self.calls.setdefault(delta.index, ["", "", ""])
            call[0] = delta.id or call[0]
            call[1] = delta.name or call[1]
            call[2] += delta.arguments
        if event.finish_reason:
            self.finish_reason = event.finish_reason
        if event.usage is not None:
            seen = self.usage or Usage()
            self.usage = Usage(
                max(seen.input_tokens, event.usage.input_tokens),
                max(seen.output_tokens, event.usage.output_tokens),
                max(seen.cached_tokens, event.usage.cached_tokens),
                max(seen.reasoning_tokens, event.usage.reasoning_tokens),
            )

    def partial_usage(self, messages: tuple[Message, ...]) -> tuple[Usage, bool]:
        """(usage to bill for a stream that stopped early, whether any of it is estimated)."""
        seen = self.usage or Usage()
        output = max(seen.output_tokens, estimate_tokens(self.text))
        prompt = seen.input_tokens or estimate_tokens("".join(m.content for m in messages))
        estimated = output != seen.output_tokens or prompt != seen.input_tokens
        return Usage(prompt, output, seen.cached_tokens, seen.reasoning_tokens), estimated


class EngineStream:
    """Async iterator of StreamEvents: the first content chunk, then every later event.

    ``attempts`` grows as attempts end; ``result`` is set once iteration has completed
    cleanly (full text, usage and cost). Iteration raises AllProvidersFailed when no step
    produced a first token, StreamInterrupted when the stream broke after it. Use
    ``async with`` or ``aclose()`` to stop early.
    """

    def __init__(self, walk: Walk, open_fn: Callable[[Adapter, ChatRequest], Awaitable[Any]]) -> None:
        self._walk = walk
        self._open = open_fn
        self.attempts = walk.attempts
        self.answering: StepPlan | None = None  # the step whose stream is being relayed
        self.result: EngineResult | None = None
        self._events = self._run()

    def __aiter__(self) -> EngineStream:
        return self

    async def __anext__(self) -> StreamEvent:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()

    async def __aenter__(self) -> EngineStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _run(self) -> AsyncIterator[StreamEvent]:
        won: Won[OpenedStream] = await self._walk.walk(self._open)
        self.answering = won.step
        opened, tally = won.value, StreamTally()
        for event in opened.head:
            tally.add(event)
        try:
            yield opened.head[-1]
            while (event := await self._next_event(won, tally)) is not None:
                tally.add(event)
                if event.content or event.finish_reason or event.usage is not None:
                    yield event
        except (GeneratorExit, asyncio.CancelledError):
            await close_quietly(opened.upstream)
            self._end(won, FailureClass.CANCELLED, tally, ProviderError(FailureClass.CANCELLED, "closed"))
            raise
        await close_quietly(opened.upstream)
        step = won.step
        response = ChatResponse(
            tally.text,
            tally.finish_reason,
            tally.usage,
            step.model,
            tool_calls=tally.tool_calls,
            refusal="".join(tally.refusal) or None,
        )
        problem = answer_problem(response, self._walk.params, schema=self._walk.plan.validate_schema)
        if problem is not None:  # relayed already: no fallback, but never a success either
            self._end(
                won, FailureClass.BAD_RESPONSE, tally, ProviderError(FailureClass.BAD_RESPONSE, problem)
            )
            raise StreamInterrupted(f"the streamed answer is not what was asked: {problem}", self.attempts)
        self._walk.record(
            won.step,
            won.retry_index,
            SUCCESS,
            won.started_at,
            won.t0,
            usage=tally.usage,
            ttft_ms=opened.ttft_ms,
        )
        self.result = self._walk.result(response, step)

    async def _next_event(self, won: Won[OpenedStream], tally: StreamTally) -> StreamEvent | None:
        """The next upstream event, None at its end; raises StreamInterrupted on a cut or stall."""
        idle_s = won.step.idle_timeout_s
        wait = min(idle_s, self._walk.remaining())
        try:
            if wait <= 0:
                raise TimeoutError
            async with asyncio.timeout(wait):
                return await anext(won.value.upstream)
        except StopAsyncIteration:
            return None
        except ProviderError as error:
            failure = error
        except TimeoutError:
            why = (
                f"no event within the step's {seconds_text(idle_s)} s idle timeout"
                if wait >= idle_s
                else "the request deadline passed"
            )
            failure = ProviderError(FailureClass.TIMEOUT, f"stream stalled: {why}")
        except Exception as exc:
            log.exception("stream from %s raised an unexpected error", won.step.provider.kind)
            failure = unexpected_error(exc)
        await close_quietly(won.value.upstream)
        self._end(won, FailureClass.STREAM_INTERRUPTED, tally, failure)
        raise StreamInterrupted(f"stream interrupted after the first token: {failure}", self.attempts)

    def _end(
        self, won: Won[OpenedStream], outcome: FailureClass, tally: StreamTally, error: ProviderError
    ) -> None:
        usage, estimated = (error.usage, False) if error.usage else tally.partial_usage(self._walk.messages)
        kept = outcome is not FailureClass.CANCELLED  # interrupted, or a bad answer found at the end
        message = error.message if kept else "the caller went away"
        if estimated:
            message += " [usage estimated]"
        self._walk.record(
            won.step,
            won.retry_index,
            outcome,
            won.started_at,
            won.t0,
            error=error if kept else None,
            usage=usage,
            ttft_ms=won.value.ttft_ms,
            message=message,
        )
