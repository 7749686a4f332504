"""The order one request tries a chain's steps in: the chain's strategy, applied before the walk.

* ordered: as configured.
* weighted: one step drawn first, each with the chance weight / total of the weights, then
  the rest as configured (load balancing across keys or regions). Without a random source
  (the admin's what-if), the heaviest step first: the likeliest order.
* lowest_latency: by the p50 latency of the step's successful calls in the health window
  (ties: p95), fastest first.
* cheapest_first: by what the request's estimated tokens (budget.request_tokens, the estimate
  budgets hold) cost at the step's price, cheapest first.
* healthiest_first: by health score (services.health), highest first.

A step the strategy has no figure for (no successful call in the window, no price) keeps its
place in the chain; the steps with figures are sorted into the other places. Ties keep the
configured order. The engine then walks plan.steps in the order given.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from django.db import DatabaseError

from providers.engine.cost import attempt_cost
from providers.engine.plan import ChainPlan, StepPlan
from providers.engine.routing import Route, order_by_keys, plan_with_steps, route_of, steps_weighted
from providers.engine.types import ChatParams, Message, Usage
from providers.models import ChainStrategy
from providers.services.budget import request_tokens
from providers.services.health import WINDOW_S, ProviderHealth, StepKey, ahealth_recent

log = logging.getLogger("rana.routing")

HEALTH_STRATEGIES = frozenset({ChainStrategy.LOWEST_LATENCY, ChainStrategy.HEALTHIEST_FIRST})
NO_DATA = "no data"
Health = Mapping[StepKey, ProviderHealth]
# A step's sort key and its figure in words; None: no figure for this step.
Figure = Callable[[StepPlan], tuple[Any, str] | None]


def usd(value: Decimal) -> str:
    """At least four decimals, and two significant digits: $0.0012, $0.000015."""
    decimals = max(4, 1 - value.adjusted()) if value else 4
    return f"${value:.{decimals}f}"


def _duration(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _sorted(plan: ChainPlan, figure: Figure, head: str, missing: str = NO_DATA) -> tuple[ChainPlan, Route]:
    figures = [figure(step) for step in plan.steps]
    order = order_by_keys([None if f is None else f[0] for f in figures])
    steps = tuple(plan.steps[i] for i in order)
    words = ", ".join(missing if figures[i] is None else figures[i][1] for i in order)
    return plan_with_steps(plan, steps), route_of(plan.strategy, steps, f"{head}: {words}")


def _weighted(plan: ChainPlan, rng: random.Random | None) -> tuple[ChainPlan, Route]:
    total = sum(step.weight for step in plan.steps)
    if not total:
        return plan, route_of(plan.strategy, plan.steps, "in the configured order (every weight is 0)")
    steps = steps_weighted(plan.steps, None if rng is None else rng.random())
    first = steps[0]
    share = f"step {first.position + 1} first (weight {first.weight} of {total})"
    why = (
        f"{'drawn' if rng is not None else 'likeliest'} by weight: {share}, the rest in the configured order"
    )
    return plan_with_steps(plan, steps), route_of(plan.strategy, steps, why)


def plan_route(
    plan: ChainPlan, *, usage: Usage | None, health: Health, rng: random.Random | None
) -> tuple[ChainPlan, Route]:
    """The plan with its steps in the strategy's order, and the route that says which and why.
    `usage`: the request's estimated tokens (cheapest_first); `health`: health_recent()'s figures
    (lowest_latency, healthiest_first); `rng`: the weighted draw (None: its likeliest order)."""
    strategy = plan.strategy

    def health_of(step: StepPlan) -> ProviderHealth | None:
        return health.get((step.provider.id, step.model))

    def latency(step: StepPlan) -> tuple[Any, str] | None:
        found = health_of(step)
        if found is None or found.p50_latency_ms is None:
            return None
        return (found.p50_latency_ms, found.p95_latency_ms), _duration(found.p50_latency_ms)

    def cost(step: StepPlan) -> tuple[Any, str] | None:
        value = attempt_cost(usage, step.price)[0] if usage is not None else None
        return None if value is None else (value, usd(value))

    def score(step: StepPlan) -> tuple[Any, str] | None:
        found = health_of(step)
        return None if found is None else (-found.score, str(found.score))

    if strategy == ChainStrategy.WEIGHTED:
        return _weighted(plan, rng)
    if strategy == ChainStrategy.LOWEST_LATENCY:
        return _sorted(plan, latency, f"by p50 latency over {WINDOW_S // 60} min")
    if strategy == ChainStrategy.CHEAPEST_FIRST:
        return _sorted(plan, cost, "by estimated cost", missing="unpriced")
    if strategy == ChainStrategy.HEALTHIEST_FIRST:
        return _sorted(plan, score, "by health score")
    return plan, route_of(strategy, plan.steps, "in the configured order")


async def route_request(
    plan: ChainPlan, messages: tuple[Message, ...], params: ChatParams, *, rng: random.Random
) -> tuple[ChainPlan, Route]:
    """plan_route for one request: its estimated tokens, this process's health figures (a
    ledger that cannot be read leaves every step without one) and the request's draw."""
    health: Health = {}
    if plan.strategy in HEALTH_STRATEGIES:
        try:
            health = await ahealth_recent()
        except DatabaseError:
            log.warning("chain %s: the ledger could not be read for health; steps kept in order", plan.slug)
    usage = request_tokens(messages, params) if plan.strategy == ChainStrategy.CHEAPEST_FIRST else None
    return plan_route(plan, usage=usage, health=health, rng=rng)
