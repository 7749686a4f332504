"""The hub's reads, for spokes: chains, prices and costs, provider status, the ledger.

Selectors only read (writing, flushing or waiting for the ledger is a service's job).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count, OuterRef, QuerySet, Subquery, Sum

from providers.engine.cost import attempt_cost
from providers.engine.results import calls_made
from providers.models import (
    Attempt,
    BodyLogging,
    ChainStep,
    Completion,
    CompletionBody,
    FallbackChain,
    Provider,
    Source,
)
from providers.redaction import redact
from providers.services.bodies import body_messages
from providers.services.breaker import get_breaker
from providers.services.breaker_controls import circuit_status
from providers.services.completions import chain_resolve
from providers.services.plans import price_lookup

__all__ = [
    "CompletionTimeline",
    "attempt_cost",
    "bodies_kept",
    "bodies_matching",
    "chain_list",
    "chain_resolve",
    "chain_usable_steps",
    "chains_without_usable_step",
    "circuit_states",
    "circuit_status",
    "completion_timeline",
    "ledger_totals",
    "price_lookup",
    "provider_probes",
]


def chain_usable_steps(
    *, chain_ids: list[int] | None = None, slug: str | None = None
) -> dict[int, list[ChainStep]]:
    """The steps each chain will try (enabled, with an enabled provider), in order, by chain id."""
    steps = ChainStep.objects.select_related("provider").order_by("chain_id", "position", "id")
    if chain_ids is not None:
        steps = steps.filter(chain_id__in=chain_ids)
    if slug is not None:
        steps = steps.filter(chain__slug=slug)
    usable: dict[int, list[ChainStep]] = {}
    for step in steps.filter(enabled=True, provider__enabled=True):
        if step.is_usable:  # the rule itself (the filter only narrows the query)
            usable.setdefault(step.chain_id, []).append(step)
    return usable


def chains_without_usable_step(*, provider_id: int) -> list[str]:
    """The names of the chains with a step on this provider that have no step left to try."""
    chain_ids = set(ChainStep.objects.filter(provider_id=provider_id).values_list("chain_id", flat=True))
    stuck = chain_ids - chain_usable_steps(chain_ids=list(chain_ids)).keys()
    return list(FallbackChain.objects.filter(pk__in=stuck).order_by("name").values_list("name", flat=True))


def chain_list() -> list[FallbackChain]:
    return list(FallbackChain.objects.order_by("-is_default", "name"))


def provider_probes() -> dict[int, dict]:
    """Per provider id: whether its health probes are on, their interval, and the last probe
    (its latest `probe` Attempt: when, model, outcome, latency, error with keys masked; None
    when never probed, or its rows are past retention). Two queries."""
    latest = Attempt.objects.filter(source=Source.PROBE, provider_id=OuterRef("pk")).order_by(
        "-started_at", "-id"
    )
    rows = Provider.objects.annotate(last_probe_id=Subquery(latest.values("id")[:1])).values(
        "pk", "probe_enabled", "probe_interval_s", "last_probe_id"
    )
    rows = list(rows)
    attempts = Attempt.objects.in_bulk([r["last_probe_id"] for r in rows if r["last_probe_id"]])
    probes = {}
    for row in rows:
        attempt = attempts.get(row["last_probe_id"])
        last = None
        if attempt is not None:
            last = {
                "at": attempt.started_at,
                "model": attempt.model,
                "outcome": attempt.outcome,
                "latency_ms": attempt.latency_ms,
                "error": redact(attempt.error_message)[:300],
            }
        probes[row["pk"]] = {
            "enabled": row["probe_enabled"],
            "interval_s": row["probe_interval_s"],
            "last": last,
        }
    return probes


def ledger_totals() -> dict:
    completions = Completion.objects.aggregate(n=Count("id"), cost=Sum("cost_usd"))
    return {
        "completions": completions["n"] or 0,
        "attempts": Attempt.objects.count(),
        "cost_usd": completions["cost"] or 0,
    }


def circuit_states() -> list[dict]:
    """The circuits that have seen a failure or a change (provider id, model, state, cooldown
    left, ...): every process's with REDIS_URL, this process's without it."""
    return get_breaker().states()


@dataclass(slots=True)
class CompletionTimeline:
    """One completion and its attempts in the order they started, as every page shows it."""

    completion: Completion | None
    attempts: list[Attempt] = field(default_factory=list)
    body: CompletionBody | None = None  # kept by chains with body logging on

    @property
    def messages(self) -> list[dict]:
        """The kept conversation ([] without a body): role, content, tool calls, images."""
        return body_messages(self.body.messages) if self.body else []

    @property
    def cost_usd(self) -> Decimal | None:
        return self.completion.cost_usd if self.completion else None

    @property
    def injected(self) -> bool:
        return any(a.injected for a in self.attempts)

    @property
    def answered_attempt(self) -> Attempt | None:
        return next((a for a in reversed(self.attempts) if a.outcome == "success"), None)

    @property
    def writing(self) -> bool:
        """Rows still on their way to the database (a worker's write-behind buffer)."""
        if self.completion is None:
            return True
        return calls_made(self.attempts) < self.completion.attempt_count


def bodies_matching(text: str) -> QuerySet[CompletionBody]:
    """Kept request bodies whose messages' text contains `text` (ASCII letters in any case)."""
    return CompletionBody.objects.filter(prompt__icontains=text)


def bodies_kept() -> bool:
    """Whether any request body is kept, or any chain keeps them now."""
    return (
        FallbackChain.objects.exclude(body_logging=BodyLogging.OFF).exists()
        or CompletionBody.objects.exists()
    )


def completion_timeline(*, request_id: uuid.UUID) -> CompletionTimeline | None:
    """The completion and attempts recorded under a request id; None when nothing is (yet)."""
    completion = Completion.objects.filter(pk=request_id).first()
    attempts = list(Attempt.objects.filter(completion_id=request_id).order_by("started_at", "id"))
    if completion is None and not attempts:
        return None
    return CompletionTimeline(completion, attempts, CompletionBody.objects.filter(pk=request_id).first())
