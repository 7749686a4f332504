"""The synthetic ledger's world: providers, chains and how each provider's models behave.

With catalogue="synth" a realistic set of providers and chains is created when absent
(names below; existing rows of the same name are reused, never changed). With "existing"
the chains already in the database are used: simulated providers behave as their options
say, other models as BEHAVIOURS says (a default behaviour when absent).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from providers.models import ChainStep, FallbackChain, ModelPrice, Provider
from providers.services import Behaviour, prices_load, simulation_chains


@dataclass(frozen=True)
class Chain:
    slug: str
    weight: float  # share of the traffic
    steps: int  # how many steps the engine tries


_PROVIDERS = {  # name: (kind, base_url)
    "openai": ("openai", ""),
    "anthropic": ("anthropic", ""),
    "gemini": ("gemini", ""),
    "vllm-local": ("openai_compatible", "http://127.0.0.1:8000/v1"),
}
BEHAVIOURS = {
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
    """The chains to simulate (those with a step the engine would try), with their weights."""
    weights = {slug: weight for slug, _, weight, _, _ in _CHAINS}
    steps = simulation_chains(slugs=slugs)
    return [Chain(slug, weights.get(slug, 0.2), count) for slug, count in steps.items()]
