"""Rollup writes that fail: retried, and when every try fails, never lost silently: the hours
are marked for repair, logged once, and rebuilt by the reconcile task (or rana_rollups).
Also: the rows of one batch are merged per key and applied in key order (the lock order that
keeps concurrent writers from deadlocking; tests/dashboards/test_rollup_writers_pg.py runs two
writer processes against PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import io
import logging

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.db.models import Sum

from dashboards.models import AttemptRollup, CompletionRollup, Grain
from dashboards.rollups import incremental
from dashboards.rollups.incremental import on_ledger_rows_written, rollups_add
from dashboards.rollups.rebuild import rollups_rebuild, rollups_repair
from dashboards.rollups.repair import REPAIR, hour_runs, mark_hours, marked_hours
from dashboards.rollups.specs import ATTEMPTS
from dashboards.rollups.upsert import ordered, rollup_increment
from dashboards.selectors.query import ledger_sums
from dashboards.tasks import rollups_reconcile
from tests.dashboards.conftest import T0, attempt, filters, request_rows

HOUR = dt.timedelta(hours=1)


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch):
    monkeypatch.setattr(incremental, "BACKOFF_S", 0.0)
    incremental.STATS.clear()


def _rows(at: dt.datetime = T0, **fields) -> list:
    return request_rows(at=at, attempts=[attempt(**fields), attempt(provider="p2", step=1)])


def _fail(times: int, error: Exception):
    """An _apply that fails `times` times, then does the real work."""
    real, calls = incremental._apply, []

    def apply(batch):
        calls.append(batch)
        if len(calls) <= times:
            raise error
        real(batch)

    return apply, calls


def _deadlock() -> OperationalError:
    return OperationalError("deadlock detected")


def _hour_attempts() -> int:
    return AttemptRollup.objects.filter(grain=Grain.HOUR).aggregate(n=Sum("attempts"))["n"] or 0


def _write_ledger_only(rows) -> None:
    """The ledger rows, without the rollups (as if the add had failed)."""
    for row in rows:
        row.save()


def test_a_batch_is_merged_per_key_and_applied_in_key_order():
    key_a = (1, "api", "p1", "simulated", "m", 0, "", False)
    key_b = (1, "api", "p2", "simulated", "m", 0, "success", False)
    rows = [
        ("h", T0 + HOUR, key_a, {"attempts": 1}),
        ("h", T0, key_b, {"attempts": 2}),
        ("d", T0, key_b, {"attempts": 4}),
        ("h", T0, key_b, {"attempts": 3}),
        ("h", T0, key_a, {"attempts": 5}),
    ]
    first = rows[1][3]
    assert ordered(rows) == [
        ("d", T0, key_b, {"attempts": 4}),
        ("h", T0, key_a, {"attempts": 5}),
        ("h", T0, key_b, {"attempts": 5}),
        ("h", T0 + HOUR, key_a, {"attempts": 1}),
    ]
    assert first == {"attempts": 2}  # the caller's measures are left alone


def test_one_call_may_add_to_the_same_key_twice(db):
    """Merged first: on PostgreSQL one statement may not touch a row twice."""
    key = tuple(ATTEMPTS.dims.values())
    measures = ATTEMPTS.empty_measures() | {"attempts": 2}
    assert rollup_increment(ATTEMPTS, [("h", T0, key, measures), ("h", T0, key, measures)]) == 1
    assert AttemptRollup.objects.get().attempts == 4


def test_a_failed_add_is_retried_and_lands(db, record, monkeypatch, caplog):
    apply, calls = _fail(2, _deadlock())
    monkeypatch.setattr(incremental, "_apply", apply)
    with caplog.at_level(logging.INFO, logger="rana.dashboards"):
        record(_rows())
    assert len(calls) == 3 and _hour_attempts() == 2
    assert incremental.STATS == {"retried:OperationalError": 2, "added": 1}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert marked_hours() == []


def test_the_cause_of_a_failure_is_named():
    class Deadlock(Exception):
        sqlstate = "40P01"

    wrapped = OperationalError("deadlock detected")
    wrapped.__cause__ = Deadlock()
    assert incremental.cause(wrapped) == "40P01"
    assert incremental.cause(OperationalError("database is locked")) == "busy"
    assert incremental.cause(ValueError("x")) == "ValueError"


def test_a_batch_that_fails_every_try_is_marked_and_logged_once(db, monkeypatch, caplog):
    apply, calls = _fail(99, _deadlock())
    monkeypatch.setattr(incremental, "_apply", apply)
    rows = _rows() + _rows(at=T0 + 2 * HOUR + dt.timedelta(minutes=59))
    _write_ledger_only(rows)
    with caplog.at_level(logging.INFO, logger="rana.dashboards"):
        assert rollups_add(rows) is False
    assert len(calls) == incremental.TRIES
    assert _hour_attempts() == 0 and marked_hours() == [T0, T0 + 2 * HOUR]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "marked for repair" in message and f"failed {incremental.TRIES} times" in message
    assert "rana_rollups --start 2025-03-10T12:00 --end 2025-03-10T13:00" in message
    assert "--start 2025-03-10T14:00 --end 2025-03-10T15:00" in message
    assert incremental.STATS["marked"] == 1


def test_marks_are_invisible_to_the_dashboards(db, record):
    record(_rows())
    mark_hours([T0, T0 + dt.timedelta(minutes=30), T0 + HOUR])
    assert AttemptRollup.objects.filter(grain=REPAIR).count() == 2
    f = filters(T0 - dt.timedelta(days=2), T0 + dt.timedelta(days=2))
    sums = {r["provider_name"]: r["attempts"] for r in ledger_sums(ATTEMPTS, f, ("provider_name",))}
    assert sums == {"p1": 1, "p2": 1}


def test_the_reconcile_task_rebuilds_exactly_the_marked_hours(db, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(incremental, "_apply", _fail(99, _deadlock())[0])
        lost = _rows()
        _write_ledger_only(lost)
        rollups_add(lost)
    kept_out = _rows(at=T0 + 5 * HOUR)  # an hour nobody marked: a rebuild of it would count it
    _write_ledger_only(kept_out)
    assert marked_hours() == [T0] and _hour_attempts() == 0
    assert "1 marked hours repaired" in rollups_reconcile.delay().get()
    assert marked_hours() == []
    assert _hour_attempts() == 2  # the marked hour, and only it
    assert set(AttemptRollup.objects.values_list("bucket", flat=True)) == {T0, T0.replace(hour=0)}
    assert CompletionRollup.objects.filter(grain=Grain.DAY).get().completions == 1


def test_marked_hours_that_have_not_settled_wait(db):
    from django.utils import timezone

    now = timezone.now()
    mark_hours([T0, now])
    assert marked_hours(before=now) == [T0]
    rollups_repair(before=now)
    assert marked_hours() == [now.replace(minute=0, second=0, microsecond=0)]


def test_a_rebuild_clears_the_marks_of_its_range_only(db):
    mark_hours([T0 - HOUR, T0, T0 + HOUR, T0 + 3 * HOUR])
    out = io.StringIO()
    call_command("rana_rollups", start=T0.isoformat(), end=(T0 + 2 * HOUR).isoformat(), stdout=out)
    assert "2 marked hours repaired" in out.getvalue()
    assert marked_hours() == [T0 - HOUR, T0 + 3 * HOUR]
    assert hour_runs(marked_hours()) == [(T0 - HOUR, T0), (T0 + 3 * HOUR, T0 + 4 * HOUR)]
    rollups_rebuild(start=T0 - 2 * HOUR, end=T0 + 5 * HOUR)
    assert marked_hours() == []


def test_hours_that_cannot_be_marked_are_marked_after_the_next_batch(db, record, monkeypatch, caplog):
    real_apply, real_mark = incremental._apply, incremental.mark_hours
    monkeypatch.setattr(incremental, "_apply", _fail(99, _deadlock())[0])

    def no_marks(hours):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(incremental, "mark_hours", no_marks)
    with caplog.at_level(logging.INFO, logger="rana.dashboards"):
        on_ledger_rows_written(None, rows=_rows())  # never raises
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "failed too" in errors[0].getMessage()
    assert "manage.py rana_rollups --start 2025-03-10T12:00 --end 2025-03-10T13:00" in errors[0].getMessage()
    assert incremental.STATS["unmarked"] == 1 and marked_hours() == []
    monkeypatch.setattr(incremental, "_apply", real_apply)  # the database is back
    monkeypatch.setattr(incremental, "mark_hours", real_mark)
    record(_rows(at=T0 + 3 * HOUR))
    assert marked_hours() == [T0]  # marked once a batch went in
    assert _hour_attempts() == 2


def test_a_row_the_rollups_cannot_sum_marks_its_hours(db, caplog):
    broken = _rows()
    broken[1].latency_ms = None  # the ledger requires it; the sum fails
    with caplog.at_level(logging.INFO, logger="rana.dashboards"):
        assert rollups_add(broken) is False
    assert marked_hours() == [T0]
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
