"""Scripted fake adapters and small builders for the fallback-engine tests.

A ScriptedAdapter plays, per (provider name, model), a script of outcomes, one per call:

* ChatResponse: returned by ``complete``.
* ProviderError: raised (by ``complete``, or by ``stream`` before any chunk).
* Takes(seconds, then): the call "takes" that long on the FakeClock (capped by the request's
  read timeout, as a well-behaved adapter would be), then plays ``then``.
* Hang(seconds): really awaits that long (for tests of the engine's own asyncio timeouts).
* a list: a stream script of str chunks, StreamEvents, Stall(seconds) (a real pause),
  Takes(seconds, chunk) (a chunk that arrives later on the FakeClock) and a ProviderError
  (the stream breaks there).

A call beyond the script plays ``then`` if one was given, else raises UnscriptedCall, a
BaseException the engine does not swallow, so an unexpected call fails the test loudly.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from providers.engine.clock import FakeClock
from providers.engine.fallback import EngineDeps
from providers.engine.plan import ChainPlan, StepPlan
from providers.engine.types import (
    ChatParams,
    ChatRequest,
    ChatResponse,
    FailureClass,
    Message,
    Price,
    ProviderConfig,
    ProviderError,
    StreamEvent,
    Usage,
)

MESSAGES = (Message("system", "be brief"), Message("user", "hello there, engine"))  # 27 chars
PARAMS = ChatParams(max_tokens=64)
PRICE = Price(Decimal("3"), Decimal("15"), Decimal("0.3"))


class UnscriptedCall(BaseException):
    pass


@dataclass(frozen=True)
class Takes:
    seconds: float
    then: Any


@dataclass(frozen=True)
class Hang:
    seconds: float = 30.0


@dataclass(frozen=True)
class Stall:
    seconds: float = 30.0


class ScriptedAdapter:
    kind = "fake"

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.scripts: dict[tuple[str, str], list[Any]] = {}
        self.fallbacks: dict[tuple[str, str], Any] = {}
        self.calls: list[tuple[str, str]] = []
        self.requests: list[ChatRequest] = []
        self.streams_closed = 0

    def script(self, provider: str, model: str, *outcomes: Any, then: Any = None) -> ScriptedAdapter:
        self.scripts[(provider, model)] = list(outcomes)
        if then is not None:
            self.fallbacks[(provider, model)] = then
        return self

    def calls_to(self, provider: str) -> int:
        return sum(1 for name, _ in self.calls if name == provider)

    def _next(self, request: ChatRequest) -> Any:
        key = (request.provider.name, request.model)
        self.calls.append(key)
        self.requests.append(request)
        script = self.scripts.get(key, [])
        if script:
            return script.pop(0)
        if key in self.fallbacks:
            return self.fallbacks[key]
        raise UnscriptedCall(f"unscripted call to {key}")

    async def _delay(self, outcome: Any, request: ChatRequest) -> Any:
        while isinstance(outcome, Takes | Hang):
            if isinstance(outcome, Hang):
                await asyncio.sleep(outcome.seconds)
                raise AssertionError("a Hang should have been cut short by the engine")
            assert self.clock is not None, "Takes needs the FakeClock"
            self.clock.advance(min(outcome.seconds, request.timeouts.read_s))
            outcome = outcome.then
        return outcome

    async def complete(self, request: ChatRequest, client: Any) -> ChatResponse:
        outcome = await self._delay(self._next(request), request)
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, ChatResponse), outcome
        return outcome

    async def stream(self, request: ChatRequest, client: Any) -> AsyncIterator[StreamEvent]:
        outcome = await self._delay(self._next(request), request)
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            for item in outcome:
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, Stall):
                    await asyncio.sleep(item.seconds)
                    continue
                if isinstance(item, Takes):  # this chunk arrives that much later on the FakeClock
                    assert self.clock is not None, "Takes needs the FakeClock"
                    self.clock.advance(item.seconds)
                    item = item.then
                yield StreamEvent(text=item) if isinstance(item, str) else item
        finally:
            self.streams_closed += 1


def provider(name: str, provider_id: int | None = None) -> ProviderConfig:
    return ProviderConfig(id=provider_id, name=name, kind="fake", base_url="https://fake.invalid")


def step(position: int, name: str, model: str = "m", **kwargs: Any) -> StepPlan:
    options: dict[str, Any] = {"retries": 0, "timeout_s": 10.0, "backoff_base_s": 1.0} | kwargs
    return StepPlan(position=position, provider=provider(name, position + 1), model=model, **options)


def chain(*steps: StepPlan, **kwargs: Any) -> ChainPlan:
    return ChainPlan(slug="test", steps=steps, **kwargs)


def ok(text: str = "hello", usage: Usage | None = None, model: str = "m") -> ChatResponse:
    return ChatResponse(text=text, finish_reason="stop", usage=usage, model=model)


def fail(failure: FailureClass | str, message: str = "", **kwargs: Any) -> ProviderError:
    injected = kwargs.pop("injected", False)
    error = ProviderError(FailureClass(failure), message or f"upstream said {failure}", **kwargs)
    if injected:
        error.injected = True  # type: ignore[attr-defined]
    return error


def make_deps(
    adapter: ScriptedAdapter, clock: FakeClock | None = None, seed: int = 7, **hooks: Any
) -> EngineDeps:
    return EngineDeps(
        adapter_for=lambda kind: adapter,
        clock=clock or adapter.clock or FakeClock(),
        rng=random.Random(seed),
        **hooks,
    )


def outcomes(attempts: list[Any]) -> list[tuple[int, int, str]]:
    """(step position, retry index, outcome) per attempt: the shape most assertions want."""
    return [(a.step_position, a.retry_index, a.outcome) for a in attempts]
