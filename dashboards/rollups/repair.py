"""Hours whose rollups missed a batch: marked when an add gives up, rebuilt by the reconcile task.

When adding a ledger batch to the rollups still fails after its retries (see
dashboards.rollups.incremental), the ledger holds rows the rollups do not. The UTC hours they
fall in are marked here, in the database, so any process can repair them later: the Celery
task dashboards.tasks.rollups_reconcile rebuilds every marked hour once it has settled, and
any rebuild (`manage.py rana_rollups`, the task) clears the marks of the hours it rebuilds,
in the same transaction.

A mark is a row of the attempt rollup table with grain "r" (neither "h" nor "d", so no
reader ever sums it: dashboards.selectors only read the grains they ask for), its bucket the
hour, every dimension at its "none" value and every measure zero. That keeps marks in the
database the rollups live in, written with the same upsert, without a table of their own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db import transaction

from dashboards.rollups.specs import ATTEMPTS
from dashboards.rollups.timegrid import HOUR, floor_hour
from dashboards.rollups.upsert import rollup_increment

REPAIR = "r"  # the grain of a mark: "this hour needs a rebuild"
_NONE_KEY = tuple(ATTEMPTS.dims.values())


def _marks():
    return ATTEMPTS.rollup.objects.filter(grain=REPAIR)


def mark_hours(hours: Iterable[dt.datetime]) -> int:
    """Mark the UTC hours holding these moments as needing a rebuild (idempotent)."""
    buckets = {floor_hour(moment) for moment in hours}
    if not buckets:
        return 0
    rows = [(REPAIR, bucket, _NONE_KEY, ATTEMPTS.empty_measures()) for bucket in buckets]
    with transaction.atomic():
        return rollup_increment(ATTEMPTS, rows)


def marked_hours(*, before: dt.datetime | None = None) -> list[dt.datetime]:
    """The marked hours (their UTC start), oldest first; with `before`, those ending by then."""
    marks = _marks()
    if before is not None:
        marks = marks.filter(bucket__lte=before - HOUR)
    return list(marks.order_by("bucket").values_list("bucket", flat=True))


def clear_marks(start: dt.datetime, end: dt.datetime) -> int:
    """Forget the marks of the hours in [start, end): the caller has just rebuilt them."""
    deleted, _ = _marks().filter(bucket__gte=start, bucket__lt=end).delete()
    return deleted


def hour_runs(hours: Iterable[dt.datetime]) -> list[tuple[dt.datetime, dt.datetime]]:
    """Sorted hours as [start, end) runs of consecutive hours."""
    runs: list[list[dt.datetime]] = []
    for hour in sorted(set(hours)):
        if runs and runs[-1][1] == hour:
            runs[-1][1] = hour + HOUR
        else:
            runs.append([hour, hour + HOUR])
    return [(start, end) for start, end in runs]
