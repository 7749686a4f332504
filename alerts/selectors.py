"""The alerts' reads: the ledger rates rules compare with their thresholds, and the history page.

Injected faults (the playground's) count for nothing here: an operator testing a chain is not
an incident.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Count, Prefetch, Q

from alerts.models import AlertDelivery, AlertEvent
from providers.models import Attempt, Completion
from providers.services import NOT_A_CALL, PROVIDER_FAILURES  # as health counts them

NO_WALK = ("running", "budget_blocked", "cache_hit")  # completions that tried no step


def fallback_rates(*, since: dt.datetime, chain_id: int | None = None) -> list[dict]:
    """Per chain with requests since `since`: chain_id, chain_slug, requests, fallbacks."""
    rows = Completion.objects.filter(created_at__gte=since, injected=False, chain_id__isnull=False)
    rows = rows.exclude(outcome__in=NO_WALK)
    if chain_id is not None:
        rows = rows.filter(chain_id=chain_id)
    return list(
        rows.values("chain_id", "chain_slug")
        .annotate(requests=Count("id"), fallbacks=Count("id", filter=Q(fallback_used=True)))
        .order_by("chain_id")
    )


def error_rates(*, since: dt.datetime, provider_id: int | None = None) -> list[dict]:
    """Per provider with calls since `since`: provider_id, provider_name, calls, errors."""
    rows = Attempt.objects.filter(started_at__gte=since, injected=False, provider_id__isnull=False)
    rows = rows.exclude(outcome__in=NOT_A_CALL)
    if provider_id is not None:
        rows = rows.filter(provider_id=provider_id)
    return list(
        rows.values("provider_id", "provider_name")
        .annotate(calls=Count("id"), errors=Count("id", filter=Q(outcome__in=PROVIDER_FAILURES)))
        .order_by("provider_id")
    )


def alert_history(*, limit: int = 100) -> list[AlertEvent]:
    """The latest events, newest first, with their rule and deliveries."""
    deliveries = Prefetch("deliveries", queryset=AlertDelivery.objects.order_by("id"))
    return list(AlertEvent.objects.select_related("rule").prefetch_related(deliveries)[:limit])
