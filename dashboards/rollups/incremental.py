"""Adding freshly written ledger rows to the rollups (the ledger_rows_written receiver).

Each batch is added in one transaction: the attempt rollup rows, then the completion rollup
rows, then the provider status, each table's rows merged per key and sorted (see
dashboards.rollups.upsert), so the writers of several processes never deadlock. Whatever
still fails (a lock timeout behind a rebuild, a serialization failure, a dropped connection,
anything) is retried TRIES times in all with a short jittered backoff; a batch that fails every
try is never lost silently: its hours are marked for repair (dashboards.rollups.repair, rebuilt
by the reconcile task) and it is logged once, with the rana_rollups command that repairs it.
Should the marks not be written either (the database unreachable), the process keeps the hours
and marks them after the next batch that goes in.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction

from dashboards.models import Grain
from dashboards.rollups.repair import hour_runs, mark_hours
from dashboards.rollups.specs import ATTEMPTS, COMPLETIONS, LedgerSpec, Row
from dashboards.rollups.status import StatusNote, notes_from_rows, provider_status_note
from dashboards.rollups.timegrid import floor_day, floor_hour
from dashboards.rollups.upsert import RollupRow, rollup_increment
from providers.models import Attempt, Completion

log = logging.getLogger("rana.dashboards")

HourSums = dict[tuple[dt.datetime, tuple], Row]

TRIES = 4  # in all, for one batch
BACKOFF_S = 0.05  # before the 2nd try; doubled each time, times a random 0.5-1.5
_MARK_TRIES = 3

# What the rollup writes of this process met, by outcome and cause ("added", "retried:40P01",
# "failed:55P03", "marked", ...): for tests and for a look from a shell.
STATS: Counter[str] = Counter()

# Hours of failed batches that could not be marked either (the database was unreachable):
# marked after the next batch that goes in.
_unmarked: set[dt.datetime] = set()
_unmarked_lock = threading.Lock()


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


def rollup_rows(spec: LedgerSpec, hours: HourSums) -> list[RollupRow]:
    rows = [(Grain.HOUR.value, bucket, key, m) for (bucket, key), m in hours.items()]
    rows += [(Grain.DAY.value, bucket, key, m) for (bucket, key), m in day_sums(spec, hours).items()]
    return rows


@dataclass(slots=True)
class RollupBatch:
    """What one ledger batch adds: rollup rows per table (in the tables' lock order), the
    provider status notes, and the UTC hours touched (what to repair should the add fail)."""

    tables: list[tuple[LedgerSpec, list[RollupRow]]] = field(default_factory=list)
    notes: dict[tuple[str, bool], StatusNote] = field(default_factory=dict)
    hours: set[dt.datetime] = field(default_factory=set)
    size: int = 0


def _split(rows: Iterable[Completion | Attempt]) -> tuple[list[Attempt], list[Completion]]:
    """Completions still running are left out; they count once written in a final state."""
    attempts: list[Attempt] = []
    completions: list[Completion] = []
    for row in rows:
        if isinstance(row, Attempt):
            attempts.append(row)
        elif isinstance(row, Completion) and row.outcome != "running":
            completions.append(row)
    return attempts, completions


def rollup_batch(attempts: list[Attempt], completions: list[Completion]) -> RollupBatch:
    batch = RollupBatch(size=len(attempts) + len(completions))
    for spec, rows in ((ATTEMPTS, attempts), (COMPLETIONS, completions)):  # the lock order
        if rows:
            hours = hour_sums(spec, rows)
            batch.hours.update(bucket for bucket, _ in hours)
            batch.tables.append((spec, rollup_rows(spec, hours)))  # ordered by rollup_increment
    batch.notes = notes_from_rows(attempts)
    return batch


def _apply(batch: RollupBatch) -> None:
    with transaction.atomic():
        for spec, rows in batch.tables:
            rollup_increment(spec, rows)
        provider_status_note(batch.notes)


def cause(exc: BaseException) -> str:
    """A short name for what failed: the PostgreSQL SQLSTATE (40P01 deadlock, 40001
    serialization failure, 55P03 lock timeout, ...), "busy" for a locked SQLite, else the type."""
    state = getattr(exc.__cause__, "sqlstate", None) or getattr(exc, "sqlstate", None)
    if state:
        return str(state)
    if "database is locked" in str(exc).lower():
        return "busy"
    return type(exc).__name__


def _pause_s(failures: int) -> float:
    return BACKOFF_S * 2 ** (failures - 1) * random.uniform(0.5, 1.5)


def _reset_connection() -> None:
    """Outside a transaction, drop a connection the error left unusable (the next try opens a
    new one). Inside one (a caller's atomic block) the savepoint was rolled back already."""
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()


def _apply_with_retries(batch: RollupBatch) -> Exception | None:
    """None once added; the last error when every try failed."""
    for failures in range(1, TRIES + 1):
        try:
            _apply(batch)
        except Exception as exc:
            STATS[f"retried:{cause(exc)}" if failures < TRIES else f"failed:{cause(exc)}"] += 1
            if failures == TRIES:
                return exc
            pause = _pause_s(failures)
            log.info(
                "rollups: adding %d ledger rows met %s (try %d of %d), trying again in %d ms",
                batch.size, cause(exc), failures, TRIES, pause * 1000,
            )  # fmt: skip
            _reset_connection()
            time.sleep(pause)
        else:
            STATS["added"] += 1
            return None
    raise AssertionError("unreachable")


def _runs(hours: Iterable[dt.datetime]) -> str:
    return ", ".join(f"--start {a:%Y-%m-%dT%H:%M} --end {b:%Y-%m-%dT%H:%M}" for a, b in hour_runs(hours))


def _mark(hours: set[dt.datetime]) -> Exception | None:
    """Mark hours for repair (a few tries); the last error if every try failed."""
    error: Exception | None = None
    for tries in range(1, _MARK_TRIES + 1):
        try:
            mark_hours(hours)
            return None
        except Exception as exc:
            error = exc
            _reset_connection()
            if tries < _MARK_TRIES:
                time.sleep(_pause_s(tries))
    return error


def _give_up(hours: set[dt.datetime], size: int, exc: BaseException) -> None:
    """Mark the batch's hours for repair, and say so once. Hours that cannot be marked either
    (the database is gone) are kept in memory and marked after a later batch."""
    with _unmarked_lock:
        hours = hours | _unmarked
        _unmarked.clear()
    error = _mark(hours)
    if error is None:
        STATS["marked"] += 1
        log.error(
            "rollups: adding %d ledger rows failed %d times (%s); their hours are marked for repair "
            "(the reconcile task rebuilds them, or manage.py rana_rollups %s)",
            size, TRIES, cause(exc), _runs(hours),
            exc_info=exc,
        )  # fmt: skip
        return
    with _unmarked_lock:
        _unmarked.update(hours)
    STATS["unmarked"] += 1
    log.error(
        "rollups: adding %d ledger rows failed %d times (%s) and marking their hours for repair "
        "failed too (%s): this process marks them after a later batch; should it stop first, "
        "rebuild them with manage.py rana_rollups %s",
        size, TRIES, cause(exc), cause(error), _runs(hours),
        exc_info=exc,
    )  # fmt: skip


def _mark_held() -> None:
    """After a batch went in: mark the hours an earlier failure could not mark."""
    with _unmarked_lock:
        if not _unmarked:
            return
        hours = set(_unmarked)
        _unmarked.clear()
    if _mark(hours) is None:
        log.info("rollups: hours held since an earlier failure are now marked for repair: %s", _runs(hours))
        return
    with _unmarked_lock:
        _unmarked.update(hours)


def rollups_add(rows: Iterable[Completion | Attempt]) -> bool:
    """Add ledger rows to the hour and day rollups and to the provider status, atomically,
    retrying failures; False when it gave up (the rows' hours are then marked for repair)."""
    attempts, completions = _split(rows)
    try:
        batch = rollup_batch(attempts, completions)
    except Exception as exc:  # a row the rollups cannot sum: repair its hours from the ledger
        hours = {floor_hour(a.started_at) for a in attempts} | {floor_hour(c.created_at) for c in completions}
        STATS[f"failed:{cause(exc)}"] += 1
        _give_up(hours, len(attempts) + len(completions), exc)
        return False
    if not batch.tables and not batch.notes:
        return True
    exc = _apply_with_retries(batch)
    if exc is None:
        _mark_held()
        return True
    _give_up(batch.hours, batch.size, exc)
    return False


def on_ledger_rows_written(sender: Any, rows: list, **kwargs: Any) -> None:
    """Never raises: the ledger is written already; what cannot be added is marked for repair."""
    try:
        rollups_add(rows)
    except Exception:
        log.exception(
            "rollups: adding %d ledger rows failed; rebuild their hours with manage.py rana_rollups",
            len(rows),
        )
