"""Fault injection for one request: make chosen chain steps fail, on purpose, through the engine.

The playground uses it to try a chain before trusting it. A FaultSpec names a step and a
failure; ``adapter_for_with_faults`` wraps the adapter registry so that calls to that step
raise a ProviderError marked ``injected = True`` instead of (or, for a stream cut, in the
middle of) the real upstream call. The engine then retries, falls back and records exactly
as it would for a real failure; it copies the mark into ``AttemptRecord.injected`` and the
ledger into ``Attempt.injected`` / ``Completion.injected``, so reliability figures can leave
injected failures out.

A step is identified by its provider id and model (``ChatRequest.provider.id`` and
``ChatRequest.model``), bound from the chain's plan by ``fault_specs_bind``. Two steps with the
same provider and model are therefore the same target.

Injected timeouts do not wait for the step's real timeout: they raise after
``INJECTED_TIMEOUT_DELAY_S`` (or the request's read timeout, if shorter), so trying a chain
stays quick. A "stream cut after N tokens" lets the real stream run and raises a
connection_error after N text events (N = 0: before the first token, so the chain can still
fall back); on a non-streaming call it fails the call after the real answer arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx

from providers.adapters import get_adapter
from providers.adapters.base import Adapter
from providers.engine.plan import ChainPlan
from providers.engine.types import ChatRequest, ChatResponse, FailureClass, ProviderError, StreamEvent

INJECTED_TIMEOUT_DELAY_S = 0.2

RATE_LIMITED = "rate_limited"
SERVER_ERROR = "server_error"
TIMEOUT = "timeout"
AUTH_ERROR = "auth_error"
STREAM_CUT = "stream_cut"

FAULT_CHOICES = (
    (RATE_LIMITED, "429 rate limited"),
    (SERVER_ERROR, "503 server error"),
    (TIMEOUT, "timeout"),
    (AUTH_ERROR, "401 auth error"),
    (STREAM_CUT, "stream cut after N tokens"),
)
FAULT_KINDS = tuple(kind for kind, _label in FAULT_CHOICES)


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """Make one chain step fail. `step` is the 0-based position; `times` None: every call."""

    step: int
    failure: str
    retry_after_s: float | None = None
    cut_after_tokens: int = 0
    times: int | None = None
    provider_id: int | None = None  # bound from the plan by fault_specs_bind
    model: str = ""

    def __post_init__(self) -> None:
        if self.failure not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.failure!r}; one of {', '.join(FAULT_KINDS)}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "failure": self.failure,
            "retry_after_s": self.retry_after_s,
            "cut_after_tokens": self.cut_after_tokens,
            "times": self.times,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultSpec:
        return cls(
            step=int(data["step"]),
            failure=str(data["failure"]),
            retry_after_s=data.get("retry_after_s"),
            cut_after_tokens=int(data.get("cut_after_tokens") or 0),
            times=data.get("times"),
        )


class StepOutOfRange(ValueError):
    def __init__(self, step: int, steps: int) -> None:
        self.step, self.steps = step, steps
        super().__init__(f"step {step + 1} does not exist: the chain has {steps} step(s)")


def fault_specs_bind(specs: Iterable[FaultSpec], plan: ChainPlan) -> list[FaultSpec]:
    """Each spec with the provider id and model of its step in `plan` (StepOutOfRange if absent)."""
    by_position = {step.position: step for step in plan.steps}
    bound = []
    for spec in specs:
        step = by_position.get(spec.step)
        if step is None:
            raise StepOutOfRange(spec.step, len(plan.steps))
        bound.append(replace(spec, provider_id=step.provider.id, model=step.model))
    return bound


def injected_error(spec: FaultSpec) -> ProviderError:
    """The ProviderError a fault raises, marked as injected."""
    if spec.failure == RATE_LIMITED:
        error = ProviderError(
            FailureClass.RATE_LIMITED, "injected: rate limited", status=429, retry_after_s=spec.retry_after_s
        )
    elif spec.failure == SERVER_ERROR:
        error = ProviderError(FailureClass.SERVER_ERROR, "injected: service unavailable", status=503)
    elif spec.failure == TIMEOUT:
        error = ProviderError(FailureClass.TIMEOUT, "injected: read timeout")
    elif spec.failure == AUTH_ERROR:
        error = ProviderError(FailureClass.AUTH_ERROR, "injected: invalid API key", status=401)
    else:
        error = ProviderError(
            FailureClass.CONNECTION_ERROR, f"injected: stream cut after {spec.cut_after_tokens} token(s)"
        )
    error.injected = True  # type: ignore[attr-defined]  # read by the engine (AttemptRecord.injected)
    return error


class FaultyAdapter:
    """One adapter, with the faults aimed at its calls. Shares the per-request counters."""

    def __init__(self, base: Adapter, specs: list[FaultSpec], counts: dict[int, int]) -> None:
        self.kind = base.kind
        self.capabilities = getattr(base, "capabilities", frozenset())
        self.inline_images = getattr(base, "inline_images", False)
        self.cannot_serve = getattr(base, "cannot_serve", None)
        self._base = base
        self._specs = specs
        self._counts = counts

    def _fault_for(self, request: ChatRequest) -> FaultSpec | None:
        for index, spec in enumerate(self._specs):
            if spec.provider_id != request.provider.id or spec.model != request.model:
                continue
            used = self._counts.get(index, 0)
            if spec.times is not None and used >= spec.times:
                continue
            self._counts[index] = used + 1
            return spec
        return None

    async def _fail_before_call(self, spec: FaultSpec, request: ChatRequest) -> None:
        if spec.failure == TIMEOUT:
            await asyncio.sleep(min(INJECTED_TIMEOUT_DELAY_S, request.timeouts.read_s))
        raise injected_error(spec)

    async def complete(self, request: ChatRequest, client: httpx.AsyncClient) -> ChatResponse:
        spec = self._fault_for(request)
        if spec is None:
            return await self._base.complete(request, client)
        if spec.failure != STREAM_CUT:
            await self._fail_before_call(spec, request)
        await self._base.complete(request, client)
        raise injected_error(spec)

    async def stream(self, request: ChatRequest, client: httpx.AsyncClient) -> AsyncIterator[StreamEvent]:
        spec = self._fault_for(request)
        if spec is not None and spec.failure != STREAM_CUT:
            await self._fail_before_call(spec, request)
        upstream = self._base.stream(request, client)
        sent = 0
        try:
            async for event in upstream:
                if spec is not None and event.text and sent >= spec.cut_after_tokens:
                    raise injected_error(spec)
                sent += 1 if event.text else 0
                yield event
        finally:
            aclose = getattr(upstream, "aclose", None)
            if aclose is not None:
                await aclose()


def adapter_for_with_faults(
    specs: Iterable[FaultSpec], base: Callable[[str], Adapter] = get_adapter
) -> Callable[[str], Adapter]:
    """An `adapter_for` for EngineDeps that injects `specs` (bound with fault_specs_bind).

    Use it for one request: the `times` counters live in the returned function.
    """
    bound = list(specs)
    counts: dict[int, int] = {}
    wrapped: dict[str, FaultyAdapter] = {}

    def adapter_for(kind: str) -> Adapter:
        if not bound:
            return base(kind)
        if kind not in wrapped:
            wrapped[kind] = FaultyAdapter(base(kind), bound, counts)
        return wrapped[kind]  # type: ignore[return-value]

    return adapter_for
