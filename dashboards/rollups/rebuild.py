"""Rebuilding rollups from the ledger for a range of whole UTC hours, idempotently.

Hour rows are recomputed from the raw ledger with SQL (grouped by UTC hour), then the day rows
of every day touched are recomputed from that day's hour rows. One transaction per day; on
PostgreSQL the rollup tables are locked against concurrent increments while a day is rebuilt
(in the order every incremental writer takes them: attempts, completions, provider status).
The repair marks of the rebuilt hours (dashboards.rollups.repair) are cleared in the same
transaction; rollups_repair rebuilds exactly the marked hours.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models.functions import TruncHour

from dashboards.models import AttemptRollup, CompletionRollup, Grain, ProviderStatus
from dashboards.rollups.repair import clear_marks, hour_runs, marked_hours
from dashboards.rollups.specs import ATTEMPTS, COMPLETIONS, LedgerSpec
from dashboards.rollups.status import notes_from_ledger, provider_status_note
from dashboards.rollups.timegrid import DAY, UTC, ceil_hour, floor_day, floor_hour
from dashboards.rollups.upsert import rollup_increment


@dataclass(slots=True)
class RebuildReport:
    start: dt.datetime
    end: dt.datetime
    hour_rows: int = 0
    day_rows: int = 0
    marks_cleared: int = 0

    def __str__(self) -> str:
        cleared = f", {self.marks_cleared} marked hours repaired" if self.marks_cleared else ""
        return (
            f"rollups rebuilt from {self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC: "
            f"{self.hour_rows} hour rows, {self.day_rows} day rows{cleared}"
        )


def _lock() -> None:
    if connection.vendor == "postgresql":
        models = (AttemptRollup, CompletionRollup, ProviderStatus)
        tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in models)
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE")


def _rebuild_hours(spec: LedgerSpec, start: dt.datetime, end: dt.datetime) -> int:
    spec.rollup.objects.filter(grain=Grain.HOUR, bucket__gte=start, bucket__lt=end).delete()
    time = spec.time_field
    rows = (
        spec.raw_rows()
        .filter(**{f"{time}__gte": start, f"{time}__lt": end})
        .annotate(rollup_bucket=TruncHour(time, tzinfo=UTC))
        .values("rollup_bucket", *spec.dims)
        .annotate(**spec.raw_aggregates())
    )
    batch = [
        (Grain.HOUR.value, row["rollup_bucket"], spec.key_of_values(row), spec.measures_of(row))
        for row in rows
    ]
    return rollup_increment(spec, batch)


def _rebuild_day(spec: LedgerSpec, day: dt.datetime) -> int:
    spec.rollup.objects.filter(grain=Grain.DAY, bucket=day).delete()
    rows = (
        spec.rollup.objects.filter(grain=Grain.HOUR, bucket__gte=day, bucket__lt=day + DAY)
        .order_by()
        .values(*spec.dims)
        .annotate(**spec.rollup_aggregates())
    )
    batch = [(Grain.DAY.value, day, spec.key_of_values(row), spec.measures_of(row)) for row in rows]
    return rollup_increment(spec, batch)


def rollups_rebuild(*, start: dt.datetime, end: dt.datetime) -> RebuildReport:
    """Recompute every rollup row for the whole UTC hours covering [start, end)."""
    start, end = floor_hour(start), ceil_hour(end)
    report = RebuildReport(start, end)
    day = floor_day(start)
    while day < end:
        piece_start, piece_end = max(start, day), min(end, day + DAY)
        with transaction.atomic():
            _lock()
            report.marks_cleared += clear_marks(piece_start, piece_end)
            for spec in (ATTEMPTS, COMPLETIONS):
                report.hour_rows += _rebuild_hours(spec, piece_start, piece_end)
                report.day_rows += _rebuild_day(spec, day)
            provider_status_note(notes_from_ledger(piece_start, piece_end))
        day += DAY
    return report


def rollups_repair(*, before: dt.datetime) -> list[RebuildReport]:
    """Rebuild the hours marked as having missed a batch (those that ended by `before`), one
    rebuild per run of consecutive marked hours."""
    return [rollups_rebuild(start=start, end=end) for start, end in hour_runs(marked_hours(before=before))]
