"""Reordering a plan's steps before the walk: plain functions the routing strategies share.

The walk itself always tries plan.steps in order; a strategy only hands it the steps in
another order (providers.services.routing says which, per request, and why).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import Any

from .plan import ChainPlan, StepPlan


@dataclass(frozen=True, slots=True)
class RouteStep:
    position: int  # the step's 0-based position in the chain
    provider: str
    model: str


@dataclass(frozen=True, slots=True)
class Route:
    """The order one request tries the steps in, and why, as the API and the timeline say it."""

    strategy: str
    order: tuple[RouteStep, ...]
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "order": [{"step": s.position, "provider": s.provider, "model": s.model} for s in self.order],
            "why": self.why,
        }


def route_of(strategy: str, steps: tuple[StepPlan, ...], why: str) -> Route:
    return Route(strategy, tuple(RouteStep(s.position, s.provider.name, s.model) for s in steps), why)


def plan_with_steps(plan: ChainPlan, steps: tuple[StepPlan, ...]) -> ChainPlan:
    return plan if steps == plan.steps else replace(plan, steps=steps)


def order_by_keys(keys: Sequence[Any]) -> list[int]:
    """The indices of `keys` in their new order: those with a key (not None) sorted by it into
    the places such entries hold; those without one (no data) keep their places. Ties keep
    the given order."""
    ranked = iter(sorted((key, i) for i, key in enumerate(keys) if key is not None))
    return [next(ranked)[1] if key is not None else i for i, key in enumerate(keys)]


def steps_weighted(steps: tuple[StepPlan, ...], draw: float | None) -> tuple[StepPlan, ...]:
    """The step a draw in [0, 1) lands on by weight first, then the rest in the configured order.

    `draw` None: the heaviest step first (the likeliest order). Every weight 0: unchanged."""
    weights = [step.weight for step in steps]
    total = sum(weights)
    if not total:
        return steps
    if draw is None:
        first = max(range(len(steps)), key=lambda i: (weights[i], -i))
    else:
        point = draw * total
        last = max(i for i, w in enumerate(weights) if w)  # where a draw rounded up to 1 lands
        first = next((i for i, upto in enumerate(accumulate(weights)) if point < upto), last)
    return (steps[first], *steps[:first], *steps[first + 1 :])
