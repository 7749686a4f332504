"""The synthetic ledger's world: providers, chains and how each provider behaves.

With catalogue="synth" a realistic set of providers and chains is created when absent
(names below; existing rows of the same name are reused, never changed). With "existing"
the chains already in the database are used, each provider with a default behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction

from providers.engine.cost import attempt_cost
from providers.engine.types import Price, Usage
from providers.models import ChainStep, FallbackChain, ModelPrice, Provider
from providers.services.plans import price_lookup
from providers.services.prices import prices_load


@dataclass(frozen=True)
class Behaviour:
    """How a provider + model answers: latency medians and its failure mix (weights)."""

    latency_ms: float = 900.0
    ttft_ms: float = 350.0
    failure_rate: float = 0.05
    failures: tuple[tuple[str, float], ...] = (
        ("rate_limited", 0.45),
        ("server_error", 0.25),
        ("timeout", 0.12),
        ("connection_error", 0.06),
        ("bad_response", 0.05),
        ("context_length", 0.03),
        ("content_filter", 0.02),
        ("stream_interrupted", 0.01),
        ("cancelled", 0.01),
    )


@dataclass
class Step:
    position: int
    provider_id: int
    provider_name: str
    provider_kind: str
    model: str
    behaviour: Behaviour
    price: Price | None

    def cost(self, input_tokens: int, output_tokens: int, cached: int) -> tuple[Decimal | None, bool]:
        return attempt_cost(Usage(input_tokens, output_tokens, cached), self.price)


@dataclass
class Chain:
    id: int
    slug: str
    weight: float
    retries: int
    steps: list[Step] = field(default_factory=list)


_PROVIDERS = {  # name: (kind, base_url)
    "openai": ("openai", ""),
    "anthropic": ("anthropic", ""),
    "gemini": ("gemini", ""),
    "vllm-local": ("openai_compatible", "http://127.0.0.1:8000/v1"),
}
_BEHAVIOURS = {
    "gpt-4o-mini": Behaviour(latency_ms=850, ttft_ms=320, failure_rate=0.06),
    "gpt-4.1": Behaviour(latency_ms=2200, ttft_ms=600, failure_rate=0.05),
    "gpt-4.1-nano": Behaviour(latency_ms=600, ttft_ms=250, failure_rate=0.04),
    "claude-haiku-4-5": Behaviour(latency_ms=1100, ttft_ms=420, failure_rate=0.08),
    "claude-sonnet-4-5": Behaviour(latency_ms=3100, ttft_ms=900, failure_rate=0.09),
    "gemini-2.5-flash": Behaviour(latency_ms=1300, ttft_ms=480, failure_rate=0.07),
    "gemini-2.5-flash-lite": Behaviour(latency_ms=700, ttft_ms=260, failure_rate=0.05),
    "llama-3.1-8b-instruct": Behaviour(latency_ms=450, ttft_ms=120, failure_rate=0.12),
}
_CHAINS = [  # slug, name, weight, budgets (daily, monthly), steps
    ("support", "Support bot", 0.45, ("60", "1500"),
     [("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5"), ("gemini", "gemini-2.5-flash")]),
    ("premium", "Premium answers", 0.15, (None, "4000"),
     [("anthropic", "claude-sonnet-4-5"), ("openai", "gpt-4.1")]),
    ("batch", "Batch summaries", 0.28, ("25", None),
     [("gemini", "gemini-2.5-flash-lite"), ("openai", "gpt-4.1-nano")]),
    ("local-first", "Local first", 0.12, (None, None),
     [("vllm-local", "llama-3.1-8b-instruct"), ("openai", "gpt-4o-mini")]),
]  # fmt: skip


def _behaviour(provider: Provider, model: str) -> Behaviour:
    """A known model's behaviour; a simulated provider's from its options (latency, faults)."""
    if provider.kind != "simulated":
        return _BEHAVIOURS.get(model, Behaviour())
    options = provider.options or {}
    latency = float(options.get("latency_ms") or 400)
    if options.get("down"):
        return Behaviour(latency_ms=latency, failure_rate=1.0, failures=(("connection_error", 1.0),))
    if options.get("hang"):
        return Behaviour(latency_ms=latency, failure_rate=1.0, failures=(("timeout", 1.0),))
    kinds = tuple((kind, 1.0) for kind in options.get("failure_kinds") or ()) or Behaviour().failures
    rate = float(options.get("failure_rate") or 0.02)
    return Behaviour(latency_ms=latency, ttft_ms=latency / 3, failure_rate=rate, failures=kinds)


def _price(kind: str, model: str) -> Price | None:
    row = price_lookup(kind, model)
    return Price(row.input_per_mtok, row.output_per_mtok, row.cached_input_per_mtok) if row else None


@transaction.atomic
def synth_catalogue_ensure() -> None:
    """Create the synthetic providers and chains that do not exist yet (and load prices if none)."""
    if not ModelPrice.objects.exists():
        prices_load()
    providers = {}
    for name, (kind, base_url) in _PROVIDERS.items():
        providers[name], _ = Provider.objects.get_or_create(
            name=name, defaults={"kind": kind, "base_url": base_url}
        )
    for slug, name, _, (daily, monthly), steps in _CHAINS:
        chain, created = FallbackChain.objects.get_or_create(
            slug=slug,
            defaults={"name": name, "daily_budget_usd": daily, "monthly_budget_usd": monthly},
        )
        if created:
            for position, (provider, model) in enumerate(steps):
                ChainStep.objects.create(
                    chain=chain, position=position, provider=providers[provider], model=model
                )


def chains_load(slugs: list[str] | None) -> list[Chain]:
    """The chains to simulate, with their enabled steps, behaviours and current prices."""
    weights = {slug: weight for slug, _, weight, _, _ in _CHAINS}
    rows = FallbackChain.objects.prefetch_related("steps__provider").order_by("name")
    if slugs:
        rows = rows.filter(slug__in=slugs)
    chains = []
    for row in rows:
        steps = [
            Step(
                position=s.position,
                provider_id=s.provider_id,
                provider_name=s.provider.name,
                provider_kind=s.provider.kind,
                model=s.model,
                behaviour=_behaviour(s.provider, s.model),
                price=_price(s.provider.kind, s.model),
            )
            for s in row.steps.all()
            if s.enabled
        ]
        if steps:
            chain = Chain(row.id, row.slug, weights.get(row.slug, 0.2), row.default_retries, steps)
            chains.append(chain)
    return chains
