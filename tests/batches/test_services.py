"""The batch run, called directly, against the fake upstream: every row answered once through the
chain's fallback and recorded in the ledger as source "batch"; a rerun skips finished rows;
cancel stops what is left; a busy lease waits."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone

from batches.models import Batch, BatchRow, BatchStatus, RowStatus
from batches.selectors import batch_progress
from batches.services import BatchInvalid, batch_cancel, batch_create, batch_run
from batches.services.create import BatchOwner
from providers.models import Completion
from tests.batches.conftest import csv_file, prompt_of
from tests.fakes import Fault

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def enqueued(monkeypatch) -> list:
    """Batches made here are run by the test itself, not by the task on commit."""
    sent: list = []
    monkeypatch.setattr("batches.services.create._enqueue", sent.append)
    return sent


def _create(data: bytes, **options) -> Batch:
    options = {"concurrency": 3, **options}
    return batch_create(data=data, filename="p.csv", chain_slug="main", owner=BatchOwner(), **options)


def test_every_row_is_answered_once_through_the_fallback_and_recorded_as_batch(
    main_chain, upstream, enqueued
):
    upstream.set_default(  # primary fails every third request: backup answers those
        lambda r: Fault.error("server_error") if int(prompt_of(r).split()[-1]) % 3 == 0 else Fault.ok(),
        model="primary",
    )
    batch = _create(csv_file(12), max_tokens=50)
    assert enqueued == [batch.pk]  # sent once the rows were committed
    report = batch_run(batch_id=batch.pk)

    assert report["rows_written"] == 12
    rows = list(BatchRow.objects.filter(batch=batch).order_by("index"))
    assert [r.status for r in rows] == [RowStatus.DONE] * 12
    assert [r.input_id for r in rows] == [f"q{i}" for i in range(12)]
    assert [r.model for r in rows[:4]] == ["backup", "primary", "primary", "backup"]
    assert rows[0].attempts == 2 and rows[1].attempts == 1
    assert all(r.answer and r.request_id for r in rows)
    completions = Completion.objects.filter(source="batch")
    assert completions.count() == 12
    assert {c.id for c in completions} == {r.request_id for r in rows}
    assert all(r.json["max_tokens"] == 50 for r in upstream.requests)
    batch.refresh_from_db()
    assert batch.status == BatchStatus.DONE and batch.finished_at is not None
    assert batch_progress(batch) | {"rate_per_s": 0, "elapsed_s": 0, "cost_usd": 0} == {
        "status": "done", "total": 12, "done": 12, "failed": 0, "cancelled": 0, "remaining": 0,
        "percent": 100, "rate_per_s": 0, "eta_s": None, "cost_usd": 0, "elapsed_s": 0,
    }  # fmt: skip


def test_a_row_every_step_fails_is_a_failed_row_with_its_error(main_chain, upstream):
    upstream.set_default(Fault.error("server_error"))
    batch = _create(csv_file(2))
    batch_run(batch_id=batch.pk)
    rows = list(BatchRow.objects.filter(batch=batch))
    assert {r.status for r in rows} == {RowStatus.FAILED}
    assert all(r.error.startswith("server_error") and r.attempts == 2 for r in rows)
    assert Batch.objects.get(pk=batch.pk).status == BatchStatus.DONE


def test_a_rerun_skips_finished_rows_and_runs_only_the_pending_ones(main_chain, upstream):
    batch = _create(csv_file(6))
    batch_run(batch_id=batch.pk)
    BatchRow.objects.filter(batch=batch, index__gte=4).update(status=RowStatus.PENDING, answer="")
    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.RUNNING, runner_token="", finished_at=None)
    upstream.reset()

    assert batch_run(batch_id=batch.pk)["rows_written"] == 2
    assert sorted(prompt_of(r) for r in upstream.requests) == ["prompt number 4", "prompt number 5"]
    assert batch_run(batch_id=batch.pk)["rows_written"] == 0  # done: nothing runs again
    assert len(upstream.requests) == 2


def test_a_cancelled_batch_runs_nothing_more(main_chain, upstream):
    batch = _create(csv_file(5))
    cancelled = batch_cancel(batch_id=batch.pk)
    assert cancelled.status == BatchStatus.CANCELLED
    assert batch_run(batch_id=batch.pk)["rows_written"] == 0
    assert upstream.requests == []
    assert set(BatchRow.objects.filter(batch=batch).values_list("status", flat=True)) == {RowStatus.CANCELLED}
    assert batch_cancel(batch_id=batch.pk).status == BatchStatus.CANCELLED  # idempotent


def test_cancel_mid_run_stops_the_remaining_rows(main_chain, upstream):
    calls = []

    def answer(request):
        calls.append(1)
        if len(calls) == 3:  # cancel while the third row is in flight (the fake's loop: ORM on a thread)
            cancel = threading.Thread(target=batch_cancel, kwargs={"batch_id": batch.pk})
            cancel.start()
            cancel.join()
        return Fault.ok()

    upstream.set_default(answer)
    batch = _create(csv_file(40), concurrency=1)
    batch_run(batch_id=batch.pk)
    statuses = list(BatchRow.objects.filter(batch=batch).values_list("status", flat=True))
    assert statuses.count(RowStatus.DONE) == 2
    assert len(calls) <= 5  # the rest never reached the upstream
    assert Batch.objects.get(pk=batch.pk).status == BatchStatus.CANCELLED


@override_settings(RANA_BATCH_LEASE_S=0.6)
def test_a_second_delivery_waits_for_a_live_lease_then_takes_over_a_stale_one(main_chain, upstream):
    batch = _create(csv_file(2))
    beat = timezone.now()
    Batch.objects.filter(pk=batch.pk).update(runner_token="other", heartbeat_at=beat, status="running")
    assert batch_run(batch_id=batch.pk)["rows_written"] == 2  # after the heartbeat went stale
    assert timezone.now() - beat >= dt.timedelta(seconds=0.6)


def test_bad_input_is_refused_before_any_row_is_stored(main_chain):
    with pytest.raises(BatchInvalid, match="concurrency must be 1 to 16"):
        _create(csv_file(1), concurrency=17)
    with pytest.raises(BatchInvalid, match="max_tokens must be"):
        _create(csv_file(1), max_tokens=0)
    with pytest.raises(BatchInvalid, match="Prompt 1 \\(id 1\\)"):
        batch_create(
            data=b'{"messages": [{"role": "wizard", "content": "x"}]}\n', filename="a.jsonl",
            chain_slug="main", owner=BatchOwner(),
        )  # fmt: skip
    assert not Batch.objects.exists()


def test_a_missing_chain_fails_each_row_with_a_named_error(main_chain, upstream):
    batch = batch_create(data=csv_file(2), filename="p.csv", chain_slug="gone", owner=BatchOwner())
    batch_run(batch_id=batch.pk)
    errors = set(BatchRow.objects.filter(batch=batch).values_list("error", flat=True))
    assert len(errors) == 1 and errors.pop().startswith("chain_not_found")
    assert BatchRow.objects.filter(batch=batch, cost_usd=Decimal(0)).count() == 2
