"""What the service hands the engine: a chain flattened into plain, ORM-free data."""

from __future__ import annotations

from dataclasses import dataclass, field

from .types import Price, ProviderConfig


@dataclass(frozen=True, slots=True)
class StepPlan:
    position: int  # 0-based position in the chain
    provider: ProviderConfig
    model: str
    retries: int  # retries after the first attempt
    timeout_s: float  # read timeout of one attempt
    backoff_base_s: float
    price: Price | None = None  # None: unpriced
    context_window: int | None = None
    # What the model can do (the capability table); None: not listed, assume what the protocol can.
    capabilities: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class ChainPlan:
    slug: str
    steps: tuple[StepPlan, ...]
    backoff_cap_s: float = 8.0
    deadline_s: float = 60.0
    max_attempts: int = 6
    connect_timeout_s: float = 5.0
    first_token_timeout_s: float = 15.0
    max_retry_after_s: float = 30.0
    content_filter_fallback: bool = False
    validate_schema: bool = True  # a json_schema answer that breaks its schema is a bad_response
    chain_id: int | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WorstCase:
    upstream_calls: int
    seconds: float


def worst_case(plan: ChainPlan) -> WorstCase:
    """The most one request can cost: calls bounded by max_attempts, time by the deadline.

    Time is every allowed attempt timing out plus the longest backoff before each retry,
    plus one capped Retry-After wait, and never more than the overall deadline.
    """
    calls = 0
    seconds = 0.0
    for step in plan.steps:
        for retry in range(step.retries + 1):
            if calls >= plan.max_attempts:
                break
            if retry:
                seconds += min(plan.backoff_cap_s, step.backoff_base_s * 2 ** (retry - 1))
            seconds += plan.connect_timeout_s + step.timeout_s
            calls += 1
    if calls:
        seconds += plan.max_retry_after_s
    return WorstCase(upstream_calls=calls, seconds=min(seconds, plan.deadline_s))
