"""The fallback walk: try a chain's steps in order, retry, fall back, record every attempt.

Pure Python: plain dataclasses in, an EngineResult (or one AllProvidersFailed) out. Time,
randomness, adapters and every side effect (ledger, circuit breaker, signals) are injected
through EngineDeps, so the whole walk runs under a FakeClock in tests.

Decisions worth knowing (the failure-class table in docs/architecture.md is the contract):

* Cancellation: when the task running ``run`` (or iterating a stream) is cancelled, the
  attempt in flight is recorded as ``cancelled`` through ``on_attempt`` and
  ``asyncio.CancelledError`` propagates unchanged, so ``asyncio.timeout``, TaskGroups and
  the ASGI server's disconnect handling keep working. ``on_outcome`` is not told about it.
* A retry whose wait would end at or past the deadline is not made: the walk moves to the
  next step at once, or, on the last step, fails with ``deadline_exceeded=True``.
* A Retry-After longer than ``plan.max_retry_after_s`` is never waited for.
* ``context_length`` skips later steps whose context window is known and smaller than the
  largest known window that already overflowed; such skips make no attempt record.
* Circuit-open steps are recorded as ``circuit_open`` attempts (no call, not counted against
  ``max_attempts``, not reported to ``on_outcome``), with ``retry_after_s`` and why when the
  ``circuit_retry_in`` hook says. ``AllProvidersFailed.failure_class`` is the class of the
  last upstream call, so a trailing circuit-open skip does not hide why the walk failed; it
  is ``circuit_open`` only when no call was made at all.
* When every attempt was ``rate_limited`` or such a circuit-open skip (and the deadline has
  not passed), ``AllProvidersFailed.retry_later`` says so: "rate_limited" if any rate limit
  (a 429, or a circuit opened on a Retry-After) was involved, else "circuit_open", and the
  seconds until the soonest step may be tried again (each step's last attempt counts: its
  Retry-After or cooldown, less the time since it ended; none given counts as now).
* ``on_fallback(from_step, to_step, error)`` fires just before the first call to a later step
  that follows a failed one.
* Timeouts bound what they say. A non-streaming attempt is bounded as a whole (connect, first
  byte, body) by its step's ``timeout_s``; a streaming attempt (open, then wait for the first
  token) by the step's ``first_token_timeout_s``. Missing the bound is a ``timeout`` failure,
  retried or passed to the next step like any other. After a stream's first token, each wait
  for the next event is bounded by the step's ``idle_timeout_s`` (engine/stream.py). The
  chain's deadline caps every bound. The adapter's HTTP client gets the chain's connect
  timeout and read timeouts as long as these bounds, so the engine's bound decides: a drip of
  bytes, each read in time, is still cut at it.
* ``release_probe(step)`` is called, in a finally, for every step ``is_circuit_open`` let
  through that gave no answer, however the walk left it (a failure, a limit reached, a
  cancellation, anything raised): a half-open probe slot is never kept by a walk that moved on.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx

from .backoff import backoff_delay
from .clock import SYSTEM_CLOCK, Clock
from .cost import priced_attempt, totals
from .plan import ChainPlan, StepPlan, seconds_text
from .results import SUCCESS, AllProvidersFailed, AttemptRecord, EngineResult, retry_later, seconds_rounded_up
from .stream import EngineStream, open_stream, unexpected_error
from .types import (
    CAPABILITIES,
    ChatParams,
    ChatRequest,
    ChatResponse,
    FailureClass,
    Message,
    ProviderError,
    Timeouts,
    Usage,
    request_needs,
)
from .validation import answer_problem

if TYPE_CHECKING:
    from providers.adapters.base import Adapter

__all__ = ["EngineDeps", "EngineStream", "Walk", "run", "run_stream"]

log = logging.getLogger("rana.engine")

T = TypeVar("T")
AttemptFn = Callable[["Adapter", ChatRequest], Awaitable[T]]

RETRYABLE = frozenset(map(FailureClass, ("server_error", "timeout", "connection_error", "bad_response")))
NOT_REPORTED = frozenset(
    {FailureClass.CANCELLED.value, FailureClass.CIRCUIT_OPEN.value, FailureClass.CAPABILITY_SKIPPED.value}
)


@dataclass
class EngineDeps:
    adapter_for: Callable[[str], Adapter]  # provider kind -> adapter
    client: httpx.AsyncClient | None = None  # passed through to adapters
    clock: Clock = SYSTEM_CLOCK
    rng: random.Random = field(default_factory=random.Random)
    on_attempt: Callable[[AttemptRecord], None] | None = None
    # An upstream call is about to start (step, retry index, started at): the ledger journals it,
    # so a process that dies mid-call still leaves a record of the call.
    on_attempt_start: Callable[[StepPlan, int, datetime], None] | None = None
    on_fallback: Callable[[StepPlan, StepPlan, ProviderError], None] | None = None
    is_circuit_open: Callable[[StepPlan], bool] | None = None
    # For a step whose circuit is open: (why, seconds until it may be tried again), why being
    # "rate_limited" (a Retry-After cooldown) or "circuit_open"; None when it does not know.
    circuit_retry_in: Callable[[StepPlan], tuple[str, float] | None] | None = None
    # The step gave no answer (failed, skipped on, cancelled, or RANA raised): any half-open
    # probe slot is_circuit_open gave this request for it, and no verdict freed, is free again.
    release_probe: Callable[[StepPlan], None] | None = None
    on_outcome: Callable[[StepPlan, str], None] | None = None
    # Fetch image URLs into inline data, for protocols that cannot take them by reference.
    resolve_images: Callable[[tuple[Message, ...]], Awaitable[tuple[Message, ...]]] | None = None


@dataclass(slots=True)
class Won(Generic[T]):
    """The attempt that answered, before its success is recorded."""

    step: StepPlan
    retry_index: int
    value: T
    started_at: datetime
    t0: float


async def run(
    plan: ChainPlan, messages: tuple[Message, ...], params: ChatParams, deps: EngineDeps
) -> EngineResult:
    """One non-streaming request through the chain. Raises AllProvidersFailed."""
    walk = Walk(plan, messages, params, deps)

    async def complete(adapter: Adapter, request: ChatRequest) -> ChatResponse:
        response = await adapter.complete(request, deps.client)  # type: ignore[arg-type]
        if response.refusal and not response.text and plan.content_filter_fallback:
            # the chain falls back on refusals: the next step may answer
            raise ProviderError(FailureClass.CONTENT_FILTER, f"the model refused: {response.refusal[:200]}")
        problem = answer_problem(response, params, schema=plan.validate_schema)
        if problem is not None:
            raise ProviderError(FailureClass.BAD_RESPONSE, problem, usage=response.usage)
        return response

    won = await walk.walk(complete)
    response = won.value
    walk.record(won.step, won.retry_index, SUCCESS, won.started_at, won.t0, usage=response.usage)
    return walk.result(response, won.step)


def run_stream(
    plan: ChainPlan, messages: tuple[Message, ...], params: ChatParams, deps: EngineDeps
) -> EngineStream:
    """One streaming request; nothing happens until the stream is iterated."""
    walk = Walk(plan, messages, params, deps, streaming=True)

    def open_(adapter: Adapter, request: ChatRequest) -> Awaitable[Any]:
        return open_stream(adapter, request, deps.client, deps.clock)

    return EngineStream(walk, open_)


class Walk:
    """The state of one request's walk down the chain."""

    def __init__(
        self,
        plan: ChainPlan,
        messages: tuple[Message, ...],
        params: ChatParams,
        deps: EngineDeps,
        *,
        streaming: bool = False,
    ) -> None:
        self.plan, self.messages, self.params, self.deps = plan, messages, params, deps
        self.streaming = streaming  # an attempt then ends at its first token (first-token timeout)
        self.attempts: list[AttemptRecord] = []
        self.calls = 0
        self._start = deps.clock.monotonic()  # reset when the walk starts
        self._last_error: ProviderError | None = None
        self._pending_fallback: tuple[StepPlan, ProviderError] | None = None
        self._overflowed_window: int | None = None
        self._needs = request_needs(messages, params)
        self._images_resolved = False
        self._circuit_reasons: dict[int, str] = {}  # step position -> why its circuit is open

    def remaining(self) -> float:
        return self.plan.deadline_s - (self.deps.clock.monotonic() - self._start)

    # -- the walk ---------------------------------------------------------------------------

    async def walk(self, attempt_fn: AttemptFn[T]) -> Won[T]:
        self._start = self.deps.clock.monotonic()  # a stream's deadline runs from its first pull
        steps = self.plan.steps
        for index, step in enumerate(steps):
            self._check_budget()
            if self._too_small(step):
                log.info("step %s skipped: context window %s too small", step.position, step.context_window)
                continue
            reason = self._capability_gap(step)
            if reason:
                now = self.deps.clock.now()
                self.record(step, 0, FailureClass.CAPABILITY_SKIPPED, now, self._now(), message=reason)
                continue
            if self.deps.is_circuit_open is not None and self._hook("is_circuit_open", step):
                self._skip_open_circuit(step)
                continue
            more = any(not self._too_small(later) for later in steps[index + 1 :])
            won = None
            try:
                won = await self._walk_step(step, attempt_fn, more_steps=more)
            finally:
                if won is None:
                    self._hook("release_probe", step)
            if won is not None:
                return won
        raise self._exhausted()

    async def _walk_step(
        self, step: StepPlan, attempt_fn: AttemptFn[T], *, more_steps: bool
    ) -> Won[T] | None:
        for retry in range(step.retries + 1):
            self._check_budget()
            self._announce_fallback(step)
            try:
                return await self._attempt(step, retry, attempt_fn)
            except ProviderError as error:
                self._last_error = error
                delay = self._after_failure(step, retry, error, more_steps=more_steps)
                if delay is None:
                    self._pending_fallback = (step, error)
                    return None
            await self.deps.clock.sleep(delay)
        return None  # pragma: no cover - the last retry always returns or moves on above

    def _after_failure(
        self, step: StepPlan, retry: int, error: ProviderError, *, more_steps: bool
    ) -> float | None:
        """Seconds to wait before retrying this step; None to move on; raises to stop."""
        failure = error.failure_class
        if failure is FailureClass.INVALID_REQUEST:
            raise self._fail(failure)
        if failure is FailureClass.CONTENT_FILTER:
            if self.plan.content_filter_fallback:
                return None
            raise self._fail(failure)
        if failure is FailureClass.CONTEXT_LENGTH:
            if step.context_window is not None:
                self._overflowed_window = max(self._overflowed_window or 0, step.context_window)
            return None
        if failure is FailureClass.RATE_LIMITED:
            return self._after_rate_limit(step, retry, error, more_steps=more_steps)
        if failure not in RETRYABLE or retry >= step.retries:
            return None
        if error.retry_after_s is not None and error.retry_after_s > self.plan.max_retry_after_s:
            return None
        delay = self._backoff(step, retry, error.retry_after_s)
        if delay < self.remaining():
            return delay
        if more_steps:
            return None
        raise self._fail(FailureClass.TIMEOUT, deadline=True)

    def _after_rate_limit(
        self, step: StepPlan, retry: int, error: ProviderError, *, more_steps: bool
    ) -> float | None:
        if more_steps or retry >= step.retries:
            return None  # the next step at once, or the end of the walk (Retry-After passed on)
        wait = error.retry_after_s if error.retry_after_s is not None else self._backoff(step, retry, None)
        if wait <= self.plan.max_retry_after_s and wait < self.remaining():
            return wait
        raise self._fail(FailureClass.RATE_LIMITED)

    def _skip_open_circuit(self, step: StepPlan) -> None:
        """Record a circuit-open skip, with when the step may be tried again if the breaker says."""
        retry_in = self._hook("circuit_retry_in", step)
        seconds, message = None, "circuit open"
        if retry_in is not None:
            reason, seconds = retry_in
            self._circuit_reasons[step.position] = reason
            wait = seconds_rounded_up(seconds)
            if reason == FailureClass.RATE_LIMITED:
                message = f"circuit open after rate limiting; retry in {wait} s"
            else:
                message = f"circuit open; half-open in {wait} s"
        skip = ProviderError(FailureClass.CIRCUIT_OPEN, message, retry_after_s=seconds)
        self.record(step, 0, FailureClass.CIRCUIT_OPEN, self.deps.clock.now(), self._now(), error=skip)

    def _backoff(self, step: StepPlan, retry: int, retry_after_s: float | None) -> float:
        return backoff_delay(
            retry,
            base_s=step.backoff_base_s,
            cap_s=self.plan.backoff_cap_s,
            rng=self.deps.rng,
            retry_after_s=retry_after_s,
        )

    # -- one attempt ------------------------------------------------------------------------

    async def _attempt(self, step: StepPlan, retry: int, attempt_fn: AttemptFn[T]) -> Won[T]:
        adapter = self.deps.adapter_for(step.provider.kind)
        started_at, t0 = self.deps.clock.now(), self._now()
        self.calls += 1
        self._hook("on_attempt_start", step, retry, started_at)
        bound_s = step.first_token_timeout_s if self.streaming else step.timeout_s
        left_s = self.remaining()
        by_step = False  # whether a timeout is the step's bound (else the chain's deadline)
        try:
            async with asyncio.timeout(left_s):
                messages = await self._messages_for(adapter)  # not counted against the step's bound
            left_s = self.remaining()
            by_step = bound_s <= left_s
            limit_s = min(bound_s, left_s)
            request = ChatRequest(
                provider=step.provider,
                model=step.model,
                messages=messages,
                params=self.params,
                timeouts=self._timeouts(step, limit_s, left_s),
                capabilities=step.capabilities,
            )
            async with asyncio.timeout(limit_s):
                value = await attempt_fn(adapter, request)
        except asyncio.CancelledError:
            self.record(step, retry, FailureClass.CANCELLED, started_at, t0, message="the caller went away")
            raise
        except ProviderError as error:
            failure = error
        except TimeoutError:
            failure = ProviderError(FailureClass.TIMEOUT, self._timed_out(bound_s, left_s, by_step=by_step))
        except Exception as exc:
            log.exception("adapter for %s raised an unexpected error", step.provider.kind)
            failure = unexpected_error(exc)
        else:
            return Won(step, retry, value, started_at, t0)
        self.record(step, retry, failure.failure_class, started_at, t0, error=failure)
        raise failure

    def _timeouts(self, step: StepPlan, limit_s: float, left_s: float) -> Timeouts:
        """The adapter's HTTP timeouts: the chain's connect timeout, and reads as long as the
        engine's own bounds, which decide (the attempt's; for a stream, the longer of its
        first-token and idle timeouts); none past the deadline."""
        read_s = max(step.first_token_timeout_s, step.idle_timeout_s) if self.streaming else limit_s
        return Timeouts(
            connect_s=min(self.plan.connect_timeout_s, limit_s),
            read_s=min(read_s, left_s),
            first_token_s=min(step.first_token_timeout_s, left_s),
        )

    def _timed_out(self, bound_s: float, left_s: float, *, by_step: bool) -> str:
        """What a timed-out attempt missed: its step's bound, or the chain's deadline."""
        if not by_step:
            return f"no answer within the {max(left_s, 0):.2f} s left before the chain's deadline"
        if self.streaming:
            return f"no first token within the step's {seconds_text(bound_s)} s first-token timeout"
        return f"no complete answer within the step's {seconds_text(bound_s)} s timeout"

    def record(
        self,
        step: StepPlan,
        retry: int,
        outcome: str,
        started_at: datetime,
        t0: float,
        *,
        error: ProviderError | None = None,
        usage: Usage | None = None,
        ttft_ms: float | None = None,
        message: str = "",
    ) -> AttemptRecord:
        """Record one attempt as it ends and tell the hooks (ledger first, then breaker)."""
        latency_ms = max(0.0, (self._now() - t0) * 1000)
        attempt = priced_attempt(
            step,
            retry,
            outcome,
            started_at,
            latency_ms,
            error=error,
            usage=usage,
            ttft_ms=ttft_ms,
            message=message,
        )
        self.attempts.append(attempt)
        self._hook("on_attempt", attempt)
        if attempt.outcome not in NOT_REPORTED:
            self._hook("on_outcome", step, attempt.outcome)
        return attempt

    def result(self, response: ChatResponse, step: StepPlan) -> EngineResult:
        usage, cost, unpriced = totals(self.attempts)
        return EngineResult(response, self.attempts, step.position, usage, cost, unpriced)

    # -- limits, endings and hooks ------------------------------------------------------------

    def _check_budget(self) -> None:
        if self.remaining() <= 0:
            raise self._fail(FailureClass.TIMEOUT, deadline=True)
        if self.calls >= self.plan.max_attempts:
            raise self._exhausted()

    def _exhausted(self) -> AllProvidersFailed:
        if self.remaining() <= 0:
            return self._fail(FailureClass.TIMEOUT, deadline=True)
        if self._last_error is not None:
            return self._fail(self._last_error.failure_class)
        skipped = any(a.outcome == FailureClass.CAPABILITY_SKIPPED for a in self.attempts)
        return self._fail(FailureClass.CAPABILITY_SKIPPED if skipped else FailureClass.CIRCUIT_OPEN)

    def _fail(self, failure: FailureClass, *, deadline: bool = False) -> AllProvidersFailed:
        retry_after = None
        if failure is FailureClass.RATE_LIMITED and self._last_error is not None:
            retry_after = self._last_error.retry_after_s
        later = None if deadline else retry_later(self.attempts, self._circuit_reasons, self.deps.clock.now())
        return AllProvidersFailed(
            list(self.attempts),
            failure_class=failure,
            retry_after_s=later.seconds if later is not None else retry_after,
            deadline_exceeded=deadline,
            retry_later=later,
        )

    def _capability_gap(self, step: StepPlan) -> str:
        """Why this step cannot serve what the request needs ("" when it can; no call is made)."""
        if not self._needs:
            return ""
        adapter = self.deps.adapter_for(step.provider.kind)
        by_protocol = sorted(self._needs - getattr(adapter, "capabilities", frozenset()))
        if by_protocol:
            return (
                f"cannot serve {' and '.join(by_protocol)}: the {step.provider.kind} protocol lacks it here"
            )
        tabled = self._needs.intersection(CAPABILITIES)
        by_model = sorted(tabled - step.capabilities) if step.capabilities is not None else []
        if by_model:
            listed = f"the capability table lists model {step.model} without it"
            return f"cannot serve {' and '.join(by_model)}: {listed}"
        cannot_serve = getattr(adapter, "cannot_serve", None)  # what only the protocol can judge
        return (cannot_serve(self.messages, self.params) or "") if cannot_serve is not None else ""

    async def _messages_for(self, adapter: Adapter) -> tuple[Message, ...]:
        """The messages as this adapter needs them: images fetched inline if it cannot take URLs."""
        if (
            not self._images_resolved
            and "images" in self._needs
            and getattr(adapter, "inline_images", False)
            and self.deps.resolve_images is not None
        ):
            self.messages = await self.deps.resolve_images(self.messages)
            self._images_resolved = True
        return self.messages

    def _too_small(self, step: StepPlan) -> bool:
        limit = self._overflowed_window
        return limit is not None and step.context_window is not None and step.context_window < limit

    def _announce_fallback(self, step: StepPlan) -> None:
        pending, self._pending_fallback = self._pending_fallback, None
        if pending is not None and pending[0] is not step:
            self._hook("on_fallback", pending[0], step, pending[1])

    def _hook(self, name: str, *args: Any) -> Any:
        """Call an optional hook; a hook that raises is logged and never breaks the request."""
        hook = getattr(self.deps, name)
        if hook is None:
            return None
        try:
            return hook(*args)
        except Exception:
            log.exception("engine hook %s failed", name)
            return None

    def _now(self) -> float:
        return self.deps.clock.monotonic()
