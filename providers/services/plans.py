"""Flatten a FallbackChain (ORM) into the engine's plain ChainPlan; what a chain's worst case is."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.utils import timezone

from providers.engine.plan import ChainPlan, StepPlan, WorstCase, worst_case
from providers.engine.routing import Route
from providers.engine.types import Price, ProviderConfig, Usage
from providers.models import ChainStep, FallbackChain, ModelCapability, ModelPrice, Provider
from providers.services.health import health_recent
from providers.services.routing import HEALTH_STRATEGIES, plan_route

WHAT_IF_PROMPT_TOKENS = 1000  # the what-if's request when none is given: this prompt, the default output

T = TypeVar("T")


def provider_config(provider: Provider) -> ProviderConfig:
    return ProviderConfig(
        id=provider.pk,
        name=provider.name,
        kind=provider.kind,
        base_url=provider.effective_base_url,
        api_key=provider.get_api_key(),
        options=dict(provider.options or {}),
    )


def price_lookup(kind: str, model: str, *, on: dt.date | None = None) -> ModelPrice | None:
    """The price in effect on a date (today by default) for a provider kind and model."""
    on = on or timezone.now().date()
    return (
        ModelPrice.objects.filter(provider_kind=kind, model=model, effective_from__lte=on)
        .order_by("-effective_from")
        .first()
    )


def capability_lookup(kind: str, model: str) -> ModelCapability | None:
    """The capability row for a model: an exact match, else the longest listed id the model
    extends with "-..." (a dated snapshot: gpt-4o-2024-08-06 is gpt-4o). None: not listed."""
    rows = {
        row.model: row
        for row in ModelCapability.objects.filter(provider_kind=kind, model__in=_model_prefixes(model))
    }
    return next((rows[name] for name in _model_prefixes(model) if name in rows), None)


def _model_prefixes(model: str) -> list[str]:
    """The model id, then each shorter id it extends at a "-" (longest first)."""
    pieces = model.split("-")
    return ["-".join(pieces[:n]) for n in range(len(pieces), 0, -1)]


def _price(row: ModelPrice | None) -> Price | None:
    if row is None:
        return None
    return Price(row.input_per_mtok, row.output_per_mtok, row.cached_input_per_mtok)


def price_today(kind: str, model: str) -> Price | None:
    """The engine's price for a provider kind and model today; None: unpriced."""
    return _price(price_lookup(kind, model))


def _step_plan(chain: FallbackChain, step: ChainStep, *, with_keys: bool) -> StepPlan:
    price_row = price_lookup(step.provider.kind, step.model)
    capability = capability_lookup(step.provider.kind, step.model)
    provider = step.provider
    config = (
        provider_config(provider)
        if with_keys
        else ProviderConfig(
            id=provider.pk, name=provider.name, kind=provider.kind, base_url=provider.effective_base_url
        )
    )
    return StepPlan(
        position=step.position,
        provider=config,
        model=step.model,
        retries=_own_or_chain(step.retries, chain.default_retries),
        timeout_s=_own_or_chain(step.timeout_s, chain.step_timeout_s),
        backoff_base_s=_own_or_chain(step.delay_s, chain.backoff_base_s),
        price=_price(price_row),
        context_window=(price_row.context_window if price_row else None)
        or (capability.context_window if capability else None),
        capabilities=capability.capabilities if capability else None,
        first_token_timeout_s=_own_or_chain(step.first_token_timeout_s, chain.first_token_timeout_s),
        idle_timeout_s=_own_or_chain(step.idle_timeout_s, chain.idle_timeout_s),
        weight=step.weight,
    )


def _own_or_chain(own: T | None, chain_default: T) -> T:
    """A step's own setting, or the chain's when the step leaves it blank."""
    return chain_default if own is None else own


def chain_plan_build(
    *, chain: FallbackChain, steps: list[ChainStep] | None = None, with_keys: bool = True
) -> ChainPlan:
    """The engine's view of a chain: enabled steps of enabled providers, in order.

    `steps` lets the admin compute a plan from unsaved inline rows.
    """
    if steps is None:
        steps = list(chain.steps.select_related("provider").order_by("position", "id"))
    usable = [s for s in steps if s.is_usable]
    return ChainPlan(
        slug=chain.slug,
        chain_id=chain.pk,
        steps=tuple(_step_plan(chain, s, with_keys=with_keys) for s in usable),
        backoff_cap_s=chain.backoff_cap_s,
        deadline_s=chain.deadline_s,
        max_attempts=chain.max_attempts,
        connect_timeout_s=chain.connect_timeout_s,
        max_retry_after_s=chain.max_retry_after_s,
        content_filter_fallback=chain.content_filter_policy == "fallback",
        validate_schema=chain.validate_schema,
        strategy=chain.strategy,
    )


@dataclass(frozen=True, slots=True)
class WhatIf:
    route: Route  # the order a request would try the steps in now, and why
    case: WorstCase  # that walk's worst case, with the providers treated as down skipped
    usage: Usage  # the request's tokens the costs are for


def what_if_usage(*, prompt_tokens: int | None = None, output_tokens: int | None = None) -> Usage:
    return Usage(
        input_tokens=WHAT_IF_PROMPT_TOKENS if prompt_tokens is None else prompt_tokens,
        output_tokens=settings.RANA_BUDGET_DEFAULT_OUTPUT_TOKENS if output_tokens is None else output_tokens,
    )


def chain_what_if(
    *,
    chain: FallbackChain,
    steps: list[ChainStep] | None = None,
    down: Collection[int] = (),
    usage: Usage | None = None,
) -> WhatIf:
    """What a request to the chain would go through now: its steps in the strategy's order (a
    weighted chain's likeliest order; health figures as this process has them), steps of the
    providers in `down` (ids) skipped, and that walk's worst-case calls, time and cost (every
    call billed in full for `usage`, by default what_if_usage()). `steps` lets the admin
    compute it from unsaved inline rows."""
    usage = what_if_usage() if usage is None else usage
    plan = chain_plan_build(chain=chain, steps=steps, with_keys=False)
    health = health_recent() if plan.strategy in HEALTH_STRATEGIES else {}
    routed, route = plan_route(plan, usage=usage, health=health, rng=None)
    return WhatIf(route=route, case=worst_case(routed, down=down, usage=usage), usage=usage)


def chain_worst_case(*, chain: FallbackChain, steps: list[ChainStep] | None = None) -> WorstCase:
    """The chain's worst case with every provider up (chain_what_if's)."""
    return chain_what_if(chain=chain, steps=steps).case
