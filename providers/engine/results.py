"""What the engine gives back: every attempt, and a result or one error."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from .types import ChatResponse, FailureClass, Usage

SUCCESS = "success"
# Attempts recorded without an upstream call (a step skipped): not counted as calls anywhere.
NO_CALL_OUTCOMES = frozenset({"circuit_open", "capability_skipped"})


def calls_made(attempts) -> int:
    """How many of the attempts (records or Attempt rows) called an upstream: the one count of it."""
    return sum(1 for a in attempts if a.outcome not in NO_CALL_OUTCOMES)


def attempts_cost(attempts) -> Decimal:
    """What a request's attempts cost (unpriced ones count nothing): the one sum of it."""
    return sum((a.cost_usd for a in attempts if a.cost_usd is not None), Decimal(0))


@dataclass(slots=True)
class AttemptRecord:
    """One upstream call (or one skipped step), as it ended."""

    step_position: int
    provider_id: int | None
    provider_name: str
    provider_kind: str
    model: str
    retry_index: int
    outcome: str  # "success" or a FailureClass value
    started_at: datetime
    latency_ms: float
    ttft_ms: float | None = None
    http_status: int | None = None
    retry_after_s: float | None = None
    usage: Usage | None = None
    cost_usd: Decimal | None = None  # None with usage present: unpriced
    unpriced: bool = False
    error_message: str = ""
    injected: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome == SUCCESS


@dataclass(slots=True)
class EngineResult:
    response: ChatResponse
    attempts: list[AttemptRecord]
    answered_step: int
    usage: Usage = field(default_factory=Usage)  # summed over every attempt that reported usage
    cost_usd: Decimal = Decimal(0)  # summed over every priced attempt
    unpriced: bool = False  # some attempt had usage but no price

    @property
    def fallback_used(self) -> bool:
        return self.answered_step != self.attempts[0].step_position if self.attempts else False


def seconds_rounded_up(seconds: float) -> int:
    """Whole seconds, rounded up and at least 1: what a Retry-After header and the words say."""
    return max(1, math.ceil(seconds))


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Every step failed on a rate limit or was skipped by an open circuit: the walk can only
    succeed later. `reason` is "rate_limited" when any rate limit was involved, "circuit_open"
    when only failure circuits were; `seconds` is how soon any step may be tried again."""

    reason: str
    seconds: float

    @property
    def whole_seconds(self) -> int:
        return seconds_rounded_up(self.seconds)


def retry_later(
    attempts: Sequence[AttemptRecord], circuit_reasons: Mapping[int, str], now: datetime
) -> RetryLater | None:
    """RetryLater when every attempt was a rate limit or a circuit-open skip whose reason is in
    `circuit_reasons` (by step position), else None. Each step's last attempt counts: its
    Retry-After or cooldown (none given: now) less the time since it ended."""
    reasons: set[str] = set()
    ready: dict[int, float] = {}  # step position -> seconds until it may be tried again
    for attempt in attempts:
        reason: str | None = None
        if attempt.outcome == FailureClass.RATE_LIMITED:
            reason = FailureClass.RATE_LIMITED
        elif attempt.outcome == FailureClass.CIRCUIT_OPEN:
            reason = circuit_reasons.get(attempt.step_position)
        if reason is None:
            return None
        reasons.add(reason)
        ended = attempt.started_at + timedelta(milliseconds=attempt.latency_ms)
        waited = (now - ended).total_seconds()
        ready[attempt.step_position] = max(0.0, (attempt.retry_after_s or 0.0) - waited)
    if not ready:
        return None
    rate_limited = FailureClass.RATE_LIMITED in reasons
    reason = FailureClass.RATE_LIMITED if rate_limited else FailureClass.CIRCUIT_OPEN
    return RetryLater(reason.value, min(ready.values()))


class EngineError(Exception):
    """Base of the errors the engine raises; each carries every attempt made."""

    failure_class: FailureClass

    def __init__(self, message: str, attempts: list[AttemptRecord]) -> None:
        super().__init__(message)
        self.attempts = attempts

    @property
    def cost_usd(self) -> Decimal:
        """What the attempts made before this error cost (billed even though it failed)."""
        return attempts_cost(self.attempts)


class AllProvidersFailed(EngineError):
    """Every step failed (or a stop-class error ended the walk early). `retry_later` is set
    when every attempt was a rate limit or a circuit-open skip whose end the breaker knew."""

    def __init__(
        self,
        attempts: list[AttemptRecord],
        *,
        failure_class: FailureClass,
        retry_after_s: float | None = None,
        deadline_exceeded: bool = False,
        retry_later: RetryLater | None = None,
    ) -> None:
        self.failure_class = failure_class
        self.retry_after_s = retry_after_s
        self.deadline_exceeded = deadline_exceeded
        self.retry_later = retry_later
        lines = "; ".join(
            f"step {a.step_position + 1} {a.provider_name}/{a.model} try {a.retry_index + 1}: "
            f"{a.outcome}{f' (HTTP {a.http_status})' if a.http_status else ''}"
            f"{f' {a.error_message}' if a.error_message else ''}"
            for a in attempts
        )
        head = "deadline exceeded" if deadline_exceeded else "all providers failed"
        super().__init__(f"{head}: {lines or 'no step could be tried'}", attempts)


class StreamInterrupted(EngineError):
    """The stream broke after its first token reached the caller: no fallback is possible."""

    failure_class = FailureClass.STREAM_INTERRUPTED


class Cancelled(EngineError):
    """The caller went away; the upstream call was closed."""

    failure_class = FailureClass.CANCELLED
