"""Adding freshly written ledger rows to the rollups (the ledger_rows_written receiver)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from dashboards.models import Grain
from dashboards.rollups.specs import ATTEMPTS, COMPLETIONS, LedgerSpec, Row
from dashboards.rollups.status import notes_from_rows, provider_status_note
from dashboards.rollups.timegrid import floor_day, floor_hour
from dashboards.rollups.upsert import rollup_increment
from providers.models import Attempt, Completion

log = logging.getLogger("rana.dashboards")

HourSums = dict[tuple[dt.datetime, tuple], Row]


def hour_sums(spec: LedgerSpec, rows: Iterable[Any]) -> HourSums:
    """Measures per (UTC hour, dimension key), summed in Python exactly as the SQL would."""
    sums: HourSums = {}
    for row in rows:
        slot = (floor_hour(getattr(row, spec.time_field)), spec.key_of(row))
        measures = sums.get(slot)
        if measures is None:
            measures = sums[slot] = spec.empty_measures()
        spec.accumulate(measures, row)
    return sums


def day_sums(spec: LedgerSpec, hours: HourSums) -> HourSums:
    days: HourSums = {}
    for (bucket, key), measures in hours.items():
        slot = (floor_day(bucket), key)
        total = days.get(slot)
        if total is None:
            days[slot] = dict(measures)
        else:
            for name, value in measures.items():
                total[name] += value
    return days


def rollup_rows(spec: LedgerSpec, hours: HourSums) -> list[tuple[str, dt.datetime, tuple, Row]]:
    rows = [(Grain.HOUR.value, bucket, key, m) for (bucket, key), m in hours.items()]
    rows += [(Grain.DAY.value, bucket, key, m) for (bucket, key), m in day_sums(spec, hours).items()]
    return rows


def rollups_add(rows: Iterable[Completion | Attempt]) -> None:
    """Add ledger rows to the hour and day rollups and to the provider status, atomically.

    Completions still running are left out; they count once written in a final state.
    """
    attempts: list[Attempt] = []
    completions: list[Completion] = []
    for row in rows:
        if isinstance(row, Attempt):
            attempts.append(row)
        elif isinstance(row, Completion) and row.outcome != "running":
            completions.append(row)
    with transaction.atomic():
        for spec, batch in ((ATTEMPTS, attempts), (COMPLETIONS, completions)):
            if batch:
                rollup_increment(spec, rollup_rows(spec, hour_sums(spec, batch)))
        provider_status_note(notes_from_rows(attempts))


def on_ledger_rows_written(sender: Any, rows: list, **kwargs: Any) -> None:
    """Never raises: the ledger is written already; `manage.py rana_rollups` (or the reconcile
    task, where a Celery worker with beat runs) rebuilds the hours a failed add missed."""
    try:
        rollups_add(rows)
    except Exception:
        log.exception(
            "rollups: adding %d ledger rows failed; rebuild their hours with manage.py rana_rollups",
            len(rows),
        )
