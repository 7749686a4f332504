"""What the service hands the engine: a chain flattened into plain, ORM-free data."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import Decimal

from .cost import attempt_cost
from .types import Price, ProviderConfig, Usage


@dataclass(frozen=True, slots=True)
class StepPlan:
    position: int  # 0-based position in the chain
    provider: ProviderConfig
    model: str
    retries: int  # retries after the first attempt
    timeout_s: float  # bound of one whole non-streaming attempt: connect, first byte, body
    backoff_base_s: float
    price: Price | None = None  # None: unpriced
    context_window: int | None = None
    # What the model can do (the capability table); None: not listed, assume what the protocol can.
    capabilities: frozenset[str] | None = None
    first_token_timeout_s: float = 15.0  # bound of one streaming attempt: connect to first token
    idle_timeout_s: float = 30.0  # a stream after its first token: longest wait for the next event
    weight: int = 1  # the weighted strategy's share of requests that try this step first


@dataclass(frozen=True, slots=True)
class ChainPlan:
    slug: str
    steps: tuple[StepPlan, ...]  # in the order the walk tries them (the strategy's, per request)
    backoff_cap_s: float = 8.0
    deadline_s: float = 60.0
    max_attempts: int = 6
    connect_timeout_s: float = 5.0  # the HTTP client's connect timeout, inside each attempt's bound
    max_retry_after_s: float = 30.0
    content_filter_fallback: bool = False
    validate_schema: bool = True  # a json_schema answer that breaks its schema is a bad_response
    chain_id: int | None = None
    strategy: str = "ordered"  # a ChainStrategy value
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StepCase:
    """One step in a worst case, in the order it would be tried."""

    position: int
    provider_name: str
    model: str
    calls: int  # 0: down (skipped without a call), or past max_attempts
    down: bool = False


@dataclass(frozen=True, slots=True)
class WorstCase:
    upstream_calls: int
    seconds: float  # a non-streaming request: every attempt timing out at its step timeout
    first_token_s: float  # a stream's first token: every attempt timing out at its first-token timeout
    idle_s: float  # then the longest silence between a stream's events before it is cut
    cost_usd: Decimal = Decimal(0)  # every call billed in full for the usage given (0 without one)
    unpriced: bool = False  # a step that would be called has no price
    steps: tuple[StepCase, ...] = ()


def worst_case(plan: ChainPlan, *, down: Collection[int] = (), usage: Usage | None = None) -> WorstCase:
    """The most one request can cost: calls bounded by max_attempts, time by the deadline.

    Time is every allowed attempt timing out at its bound (the step timeout, or for a stream
    the first-token timeout; a connect is inside either) plus the longest backoff before each
    retry, plus one capped Retry-After wait, and never more than the overall deadline. Steps
    whose provider id is in `down` are skipped without a call, as a circuit-open step is. With
    `usage` (a request's estimated tokens), the cost is every call billed in full at its
    step's price.
    """
    calls = 0
    seconds = first_token_s = idle_s = 0.0
    cost = Decimal(0)
    unpriced = False
    cases = []
    for step in plan.steps:
        is_down = step.provider.id in down
        step_calls = 0
        for retry in range(0 if is_down else step.retries + 1):
            if calls >= plan.max_attempts:
                break
            backoff = min(plan.backoff_cap_s, step.backoff_base_s * 2 ** (retry - 1)) if retry else 0.0
            seconds += backoff + step.timeout_s
            first_token_s += backoff + step.first_token_timeout_s
            idle_s = max(idle_s, step.idle_timeout_s)
            calls += 1
            step_calls += 1
        if usage is not None and step_calls:
            call_cost, step_unpriced = attempt_cost(usage, step.price)
            cost += (call_cost or Decimal(0)) * step_calls
            unpriced = unpriced or step_unpriced
        cases.append(StepCase(step.position, step.provider.name, step.model, step_calls, is_down))
    if calls:
        seconds += plan.max_retry_after_s
        first_token_s += plan.max_retry_after_s
    return WorstCase(
        upstream_calls=calls,
        seconds=min(seconds, plan.deadline_s),
        first_token_s=min(first_token_s, plan.deadline_s),
        idle_s=min(idle_s, plan.deadline_s),
        cost_usd=cost,
        unpriced=unpriced,
        steps=tuple(cases),
    )


def seconds_text(value: float) -> str:
    """A timeout as a person writes it: 2.0 -> "2.0", 0.25 -> "0.25"."""
    return f"{value:.1f}" if value == round(value, 1) else f"{value:g}"
