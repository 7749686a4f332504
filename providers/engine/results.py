"""What the engine gives back: every attempt, and a result or one error."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from .types import ChatResponse, FailureClass, Usage

SUCCESS = "success"
# Attempts recorded without an upstream call (a step skipped): not counted as calls anywhere.
NO_CALL_OUTCOMES = frozenset({"circuit_open", "capability_skipped"})


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
    """Every step failed (or a stop-class error ended the walk early)."""

    def __init__(
        self,
        attempts: list[AttemptRecord],
        *,
        failure_class: FailureClass,
        retry_after_s: float | None = None,
        deadline_exceeded: bool = False,
    ) -> None:
        self.failure_class = failure_class
        self.retry_after_s = retry_after_s
        self.deadline_exceeded = deadline_exceeded
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
