"""Ledger retention: completions older than an age are deleted with their attempts, in batches.

Each batch is one transaction of at most BATCH completions and all their attempts (a request's
attempts go with it, so no attempt outlives its completion), oldest first; a batch that fails
rolls back alone, and what earlier batches deleted stays deleted. The dashboards' rollup tables
are derived from the ledger and left alone: pruned days and hours still show from their rollup
rows. Run daily by providers.tasks.ledger_retention (Celery beat) with RANA_RETENTION_DAYS, and
by hand with `manage.py rana_prune` (--dry-run counts what would go).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from providers.models import Attempt, Completion

logger = logging.getLogger(__name__)

BATCH = 5_000


@dataclass(slots=True)
class PruneReport:
    before: dt.datetime | None  # None: retention is off (0 days)
    completions: int = 0
    attempts: int = 0
    batches: int = 0
    dry_run: bool = False

    def __str__(self) -> str:
        if self.before is None:
            return "ledger retention is off (0 days): nothing pruned"
        done = "would prune" if self.dry_run else f"pruned in {self.batches} batches"
        return (
            f"ledger rows from before {self.before:%Y-%m-%d %H:%M} UTC: {done} "
            f"{self.completions:,} completions and {self.attempts:,} attempts"
        )

    def as_dict(self) -> dict[str, Any]:
        before = self.before.isoformat() if self.before else None
        return {"before": before, "completions": self.completions, "attempts": self.attempts}


def ledger_prune(
    *, days: int, now: dt.datetime | None = None, batch_size: int = BATCH, dry_run: bool = False
) -> PruneReport:
    """Delete the completions created more than `days` days before `now`, with their attempts;
    `days=0` keeps everything. With `dry_run`, count them instead."""
    if days <= 0:
        return PruneReport(before=None, dry_run=dry_run)
    before = (now or timezone.now()) - dt.timedelta(days=days)
    old = Completion.objects.filter(created_at__lt=before)
    if dry_run:
        attempts = Attempt.objects.filter(completion__created_at__lt=before).count()
        return PruneReport(before=before, completions=old.count(), attempts=attempts, dry_run=True)
    report = PruneReport(before=before)
    while True:
        with transaction.atomic():
            ids = list(old.order_by("created_at").values_list("id", flat=True)[:batch_size])
            if not ids:
                break
            _, deleted = Completion.objects.filter(id__in=ids).delete()  # its attempts cascade
        report.batches += 1
        report.completions += deleted.get(Completion._meta.label, 0)
        report.attempts += deleted.get(Attempt._meta.label, 0)
    logger.info("%s", report)
    return report
