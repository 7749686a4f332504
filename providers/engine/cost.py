"""What an attempt cost, in exact Decimal USD, from its usage and the step's price; priced records."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from .results import AttemptRecord
from .types import Price, ProviderError, Usage

if TYPE_CHECKING:  # plan.py prices its worst case with attempt_cost
    from .plan import StepPlan

PER_MILLION = Decimal(1_000_000)


def attempt_cost(usage: Usage | None, price: Price | None) -> tuple[Decimal | None, bool]:
    """(cost_usd, unpriced) for one attempt.

    No usage: (None, False), nothing to bill. Usage but no price: (None, True), flagged.
    Cached tokens are the part of input_tokens served from the prompt cache and are billed
    at the cached rate (the input rate when the price has none); they are clamped to
    [0, input_tokens] so a confused report cannot produce a negative uncached count.
    """
    if usage is None:
        return None, False
    if price is None:
        return None, True
    cached = min(max(usage.cached_tokens, 0), max(usage.input_tokens, 0))
    uncached = max(usage.input_tokens, 0) - cached
    cached_rate = price.input_per_mtok if price.cached_input_per_mtok is None else price.cached_input_per_mtok
    total = (
        uncached * price.input_per_mtok
        + cached * cached_rate
        + max(usage.output_tokens, 0) * price.output_per_mtok
    )
    return total / PER_MILLION, False


def totals(attempts: Iterable[AttemptRecord]) -> tuple[Usage, Decimal, bool]:
    """(usage, cost_usd, unpriced) summed over every attempt that reported usage."""
    usage = Usage()
    cost = Decimal(0)
    unpriced = False
    for attempt in attempts:
        if attempt.usage is None:
            continue
        usage = usage + attempt.usage
        if attempt.cost_usd is not None:
            cost += attempt.cost_usd
        if attempt.unpriced:
            unpriced = True
    return usage, cost, unpriced


def priced_attempt(
    step: StepPlan,
    retry: int,
    outcome: str,
    started_at: datetime,
    latency_ms: float,
    *,
    error: ProviderError | None = None,
    usage: Usage | None = None,
    ttft_ms: float | None = None,
    message: str = "",
) -> AttemptRecord:
    """One attempt's record, priced with the step's price (a failure's own usage is billed too)."""
    if usage is None and error is not None:
        usage = error.usage
    cost, unpriced = attempt_cost(usage, step.price)
    return AttemptRecord(
        step_position=step.position,
        provider_id=step.provider.id,
        provider_name=step.provider.name,
        provider_kind=step.provider.kind,
        model=step.model,
        retry_index=retry,
        outcome=str(outcome),
        started_at=started_at,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        http_status=error.status if error else None,
        retry_after_s=error.retry_after_s if error else None,
        usage=usage,
        cost_usd=cost,
        unpriced=unpriced,
        error_message=message or (error.message if error else ""),
        injected=bool(getattr(error, "injected", False)),
    )
