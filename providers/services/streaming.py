"""stream(): the streaming twin of complete(). Fallback is free until the first token.

Budget, cache and chain errors are raised by stream() itself, before anything is sent, so
a spoke can still answer with a proper status. Errors after that come out of iteration:
AllProvidersFailed before the first token, StreamInterrupted after it. Closing the stream
early closes the upstream and records the completion as cancelled. However the stream ends
(finished, failed, closed, or never iterated and closed), its budget hold is settled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from providers.engine.fallback import EngineStream, run_stream
from providers.engine.results import AllProvidersFailed, AttemptRecord, Cancelled, EngineError
from providers.engine.routing import Route
from providers.engine.types import ChatParams, StreamEvent
from providers.services.completions import (
    DEFAULT_CALLER,
    ChainRef,
    CompletionResult,
    Prepared,
    engine_deps,
    prepare,
    record_cache_hit,
    record_failure,
    record_success,
    rng_of,
    settle,
    with_faults,
)
from providers.services.faults import FaultSpec
from providers.services.ledger import Caller


@dataclass(frozen=True, slots=True)
class AnsweringStep:
    provider_name: str
    model: str
    position: int | None  # None for a cached answer (no step was called)


class CompletionStream:
    """Async iterator of StreamEvent; `result` is set once it ended cleanly."""

    def __init__(self, prepared: Prepared, overrides: Mapping[str, Any] | None) -> None:
        self.prepared = prepared
        self.request_id = prepared.ledger.request_id
        self.result: CompletionResult | None = None
        self._overrides = overrides
        self._finished = False
        self._engine_stream: EngineStream | None = None
        self._events = self._run()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._events

    async def aclose(self) -> None:
        try:
            await self._events.aclose()
        finally:  # a stream closed before its first pull never ran _run's own finally
            await settle(self.prepared, self.prepared.ledger.cost_so_far)

    @property
    def attempts(self) -> list[AttemptRecord]:
        """Every attempt so far (the answering one included once it has ended)."""
        return self.prepared.ledger.attempts

    @property
    def cost_so_far(self) -> Decimal:
        """What the attempts so far cost; final once the stream has ended."""
        return self.prepared.ledger.cost_so_far

    @property
    def chain_slug(self) -> str:
        return self.prepared.loaded.slug

    @property
    def route(self) -> Route:
        """The order the steps were to be tried in, and why."""
        return self.prepared.route

    @property
    def cache_hit(self) -> bool:
        return self.prepared.cached is not None

    @property
    def answering(self) -> AnsweringStep | None:
        """Who is answering, once the first event is out: the relayed step, or the cached answer's."""
        step = self._engine_stream.answering if self._engine_stream is not None else None
        if step is not None:
            return AnsweringStep(step.provider.name, step.model, step.position)
        hit = self.prepared.cached
        return AnsweringStep(hit.provider_name, hit.model, None) if hit is not None else None

    async def _replay_cache(self) -> AsyncIterator[StreamEvent]:
        hit = self.prepared.cached
        words = hit.text.split(" ")
        for i, word in enumerate(words):
            yield StreamEvent(text=word if i == 0 else " " + word)
        yield StreamEvent(finish_reason=hit.finish_reason, usage=hit.usage)
        self.result = await record_cache_hit(self.prepared)

    async def _run(self) -> AsyncIterator[StreamEvent]:
        try:
            if self.prepared.cached:
                async for event in self._replay_cache():
                    yield event
                return
            engine_stream = run_stream(
                self.prepared.plan,
                self.prepared.messages,
                self.prepared.params,
                engine_deps(self.prepared.ledger, self._overrides, breaker=self.prepared.loaded.breaker),
            )
            self._engine_stream = engine_stream
            try:
                async for event in engine_stream:
                    yield event
            except EngineError as exc:
                self._finished = True
                await record_failure(self.prepared, exc)
                raise
            except (asyncio.CancelledError, GeneratorExit):
                await self._cancel(engine_stream)
                raise
            self._finished = True
            self.result = await record_success(self.prepared, engine_stream.result)
        finally:  # settled already unless something above raised before it could
            await settle(self.prepared, self.prepared.ledger.cost_so_far)

    async def _cancel(self, engine_stream) -> None:
        if self._finished:
            return
        self._finished = True
        await engine_stream.aclose()
        await record_failure(self.prepared, Cancelled("the caller went away", self.prepared.ledger.attempts))


async def stream(
    *,
    chain: ChainRef = None,
    messages: Sequence,
    params: ChatParams | Mapping[str, Any] | None = None,
    caller: Caller = DEFAULT_CALLER,
    faults: Sequence[FaultSpec] = (),
    overrides: Mapping[str, Any] | None = None,
) -> CompletionStream:
    """Start a streamed completion. Raises InvalidRequest, ChainNotFound, NoUsableStep,
    BudgetExceeded or StepOutOfRange. `faults` and `overrides` as for complete()."""
    prepared = await prepare(
        chain=chain, messages=messages, params=params, caller=caller, stream=True, rng=rng_of(overrides)
    )
    try:
        return CompletionStream(prepared, with_faults(prepared, faults, overrides))
    except BaseException:
        await settle(prepared, Decimal(0))
        raise


__all__ = ["AllProvidersFailed", "CompletionStream", "stream"]
