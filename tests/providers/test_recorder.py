"""The ledger recorder: rows land within 100 ms; a graceful stop flushes everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import OperationalError
from django.utils import timezone

from providers.models import Attempt, Completion
from providers.models.ledger import new_request_id
from providers.services.recorder import BufferedRecorder

ROOT = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).parent / "scripts" / "ledger_writer.py"


def attempt_row(completion_id, model="m") -> Attempt:
    return Attempt(
        completion_id=completion_id,
        started_at=timezone.now(),
        source="probe",
        step_position=0,
        provider_name="p",
        provider_kind="simulated",
        model=model,
        outcome="success",
        latency_ms=1.0,
    )


def _holds(predicate) -> bool:
    try:
        return predicate()
    except OperationalError:  # the test database is shared-cache SQLite: a read can meet the writer's lock
        return False


@pytest.fixture
def buffered_recorder():
    """A BufferedRecorder factory whose writer threads are stopped (connections closed) after."""
    made = []

    def make(**kwargs) -> BufferedRecorder:
        made.append(BufferedRecorder(**kwargs))
        return made[-1]

    yield make
    for recorder in made:
        recorder.close()


def wait_for(predicate, timeout_s: float) -> float:
    """Poll until predicate() is true; return the seconds it took (fails past the timeout)."""
    start = time.monotonic()
    while not _holds(predicate):
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"condition not met within {timeout_s}s")
        time.sleep(0.002)
    return time.monotonic() - start


@pytest.mark.django_db(transaction=True)
def test_buffered_rows_reach_the_database_within_100ms(buffered_recorder):
    recorder = buffered_recorder(interval_s=0.05)
    completion_id = new_request_id()
    took = []
    for i in range(20):
        recorder.submit(attempt_row(completion_id, model=f"m{i}"))
        took.append(wait_for(lambda i=i: Attempt.objects.filter(model=f"m{i}").exists(), timeout_s=1.0))
    assert max(took) < 0.1, took
    assert recorder.flush(5)  # the writer's after-commit work (rollups) ends before the test's teardown


@pytest.mark.django_db(transaction=True)
def test_completion_rows_are_upserted_latest_state_wins(buffered_recorder):
    recorder = buffered_recorder()
    request_id = new_request_id()
    now = timezone.now()
    for outcome in ("running", "success"):
        recorder.submit(Completion(id=request_id, created_at=now, source="api", outcome=outcome))
    assert recorder.flush(5)
    assert Completion.objects.get(id=request_id).outcome == "success"
    recorder.submit(Completion(id=request_id, created_at=now, source="api", outcome="failed"))
    assert recorder.flush(5)
    assert Completion.objects.filter(id=request_id).count() == 1
    assert Completion.objects.get(id=request_id).outcome == "failed"


@pytest.mark.django_db(transaction=True)
def test_many_rows_from_many_requests_are_written_in_batches(buffered_recorder):
    recorder = buffered_recorder()
    ids = [new_request_id() for _ in range(50)]
    for completion_id in ids:
        for retry in range(4):
            recorder.submit(attempt_row(completion_id, model=f"r{retry}"))
    assert recorder.flush(10)
    assert Attempt.objects.count() == 200


def start_writer(tmp_path) -> tuple[subprocess.Popen, dict]:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        "RANA_LEDGER_MODE": "buffered",
        "DEBUG": "1",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120
    )
    child = subprocess.Popen(
        [sys.executable, str(WRITER)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    return child, env


def read_submitted(child: subprocess.Popen, until: int) -> dict[int, float]:
    submitted = {}
    for line in child.stdout:
        n, t = line.split()
        submitted[int(n)] = float(t)
        if len(submitted) >= until:
            break
    return submitted


def rows_in(env) -> set[str]:
    import sqlite3

    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT model FROM providers_attempt")}


def test_sigterm_flushes_every_submitted_row(tmp_path):
    child, env = start_writer(tmp_path)
    submitted = read_submitted(child, until=300)
    child.send_signal(signal.SIGTERM)
    for line in child.stdout:  # rows submitted between our read and the signal
        n, t = line.split()
        submitted[int(n)] = float(t)
    assert child.wait(timeout=30) == -signal.SIGTERM
    missing = {f"row-{n}" for n in submitted} - rows_in(env)
    assert not missing, f"{len(missing)} submitted rows lost on SIGTERM"


def test_hard_kill_loses_at_most_the_last_100ms(tmp_path):
    child, env = start_writer(tmp_path)
    submitted = read_submitted(child, until=300)
    killed_at = time.monotonic()
    child.kill()
    child.wait(timeout=30)
    stored = rows_in(env)
    old_enough = {f"row-{n}" for n, t in submitted.items() if t < killed_at - 0.1}
    assert len(old_enough) > 100
    assert old_enough <= stored, f"lost {len(old_enough - stored)} rows older than 100 ms"
