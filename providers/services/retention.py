"""Ledger retention: completions older than an age are deleted with their attempts and bodies,
in batches; kept request bodies (body logging) go sooner, after an age of their own.

Each batch is one transaction of at most BATCH completions and all their attempts (a request's
attempts go with it, so no attempt outlives its completion), oldest first; a batch that fails
rolls back alone, and what earlier batches deleted stays deleted. The dashboards' rollup tables
are derived from the ledger and left alone: pruned days and hours still show from their rollup
rows. Run daily by providers.tasks.ledger_retention (Celery beat) with RANA_RETENTION_DAYS and
RANA_BODY_RETENTION_DAYS, and by hand with `manage.py rana_prune` (--dry-run counts what would go).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from providers.models import Attempt, Completion, CompletionBody

logger = logging.getLogger(__name__)

BATCH = 5_000


@dataclass(slots=True)
class PruneReport:
    before: dt.datetime | None  # None: retention is off (0 days)
    completions: int = 0
    attempts: int = 0
    batches: int = 0
    dry_run: bool = False
    bodies_before: dt.datetime | None = None  # None: bodies live as long as their completions
    bodies: int = 0  # bodies deleted (or counted) on their own, before their completions

    def __str__(self) -> str:
        done = "would prune" if self.dry_run else "pruned"
        if self.before is None:
            text = "ledger retention is off (0 days): no completions pruned"
        else:
            batches = "" if self.dry_run else f" in {self.batches} batches"
            text = (
                f"ledger rows from before {self.before:%Y-%m-%d %H:%M} UTC: {done}{batches} "
                f"{self.completions:,} completions and {self.attempts:,} attempts"
            )
        if self.bodies_before is not None:
            when = f"{self.bodies_before:%Y-%m-%d %H:%M}"
            text += f"; request bodies from before {when} UTC: {done} {self.bodies:,}"
        return text

    def as_dict(self) -> dict[str, Any]:
        before = self.before.isoformat() if self.before else None
        bodies_before = self.bodies_before.isoformat() if self.bodies_before else None
        return {
            "before": before,
            "completions": self.completions,
            "attempts": self.attempts,
            "bodies_before": bodies_before,
            "bodies": self.bodies,
        }


def ledger_prune(
    *,
    days: int,
    body_days: int = 0,
    now: dt.datetime | None = None,
    batch_size: int = BATCH,
    dry_run: bool = False,
) -> PruneReport:
    """Delete the completions created more than `days` days before `now`, with their attempts and
    bodies, then the bodies older than `body_days` (when that is sooner); 0 keeps them. With
    `dry_run`, count them instead."""
    now = now or timezone.now()
    report = PruneReport(before=None, dry_run=dry_run)
    if body_days > 0 and (days <= 0 or body_days < days):
        report.bodies_before = now - dt.timedelta(days=body_days)
    if days > 0:
        report.before = now - dt.timedelta(days=days)
        _completions_prune(report, batch_size)
    if report.bodies_before is not None:
        _bodies_prune(report, batch_size)
    if not dry_run:
        logger.info("%s", report)
    return report


def _completions_prune(report: PruneReport, batch_size: int) -> None:
    old = Completion.objects.filter(created_at__lt=report.before)
    if report.dry_run:
        report.attempts = Attempt.objects.filter(completion__created_at__lt=report.before).count()
        report.completions = old.count()
        return
    for deleted in _in_batches(old, batch_size):  # attempts and bodies cascade
        report.batches += 1
        report.completions += deleted.get(Completion._meta.label, 0)
        report.attempts += deleted.get(Attempt._meta.label, 0)


def _bodies_prune(report: PruneReport, batch_size: int) -> None:
    old = CompletionBody.objects.filter(created_at__lt=report.bodies_before)
    if report.dry_run:
        report.bodies = old.count()
        return
    for deleted in _in_batches(old, batch_size):
        report.bodies += deleted.get(CompletionBody._meta.label, 0)


def _in_batches(old: QuerySet, batch_size: int) -> Iterator[dict[str, int]]:
    """Delete `old` oldest first, `batch_size` rows a transaction; yields each batch's counts."""
    while True:
        with transaction.atomic():
            ids = list(old.order_by("created_at").values_list("pk", flat=True)[:batch_size])
            if not ids:
                return
            _, deleted = old.model.objects.filter(pk__in=ids).delete()
        yield deleted
