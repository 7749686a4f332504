"""Read-side queries over providers, chains and the ledger. Plain data out."""

from __future__ import annotations

from django.db.models import Count, Sum

from providers.models import Attempt, Completion, FallbackChain


def chain_list() -> list[FallbackChain]:
    return list(FallbackChain.objects.order_by("-is_default", "name"))


def ledger_totals() -> dict:
    completions = Completion.objects.aggregate(n=Count("id"), cost=Sum("cost_usd"))
    return {
        "completions": completions["n"] or 0,
        "attempts": Attempt.objects.count(),
        "cost_usd": completions["cost"] or 0,
    }
