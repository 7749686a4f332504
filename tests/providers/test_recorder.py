"""The ledger recorder: rows land within 100 ms; a graceful stop flushes everything."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import OperationalError
from django.utils import timezone

from providers.models import Attempt, Completion, FallbackChain
from providers.models.ledger import new_request_id
from providers.services.journal_codec import decode
from providers.services.ledger_writer import BufferedRecorder
from providers.services.recorder import PendingRow, announce_rows, write_rows
from providers.signals import ledger_rows_written

ROOT = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).parent / "scripts" / "ledger_writer.py"


_TRIES = iter(range(10**9))


def attempt_row(completion_id, model="m", step_position=None) -> Attempt:
    """An attempt row; each one a different try (step) unless step_position is given."""
    return Attempt(
        completion_id=completion_id,
        started_at=timezone.now(),
        source="probe",
        step_position=next(_TRIES) if step_position is None else step_position,
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


def start_writer(tmp_path, **extra_env: str) -> tuple[subprocess.Popen, dict]:
    env = {
        **os.environ,
        **extra_env,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        "RANA_JOURNAL_DIR": str(tmp_path / "journal"),
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


def test_sigterm_flushes_then_hands_over_to_the_servers_own_handler(tmp_path):
    """The recorder chains to a handler installed before it (a server's), never replaces it."""
    child, env = start_writer(tmp_path, WRITER_SERVER_HANDLER="1")
    submitted = read_submitted(child, until=200)
    child.send_signal(signal.SIGTERM)
    tail = []
    for line in child.stdout:
        if line.startswith("server handler ran"):
            tail.append(line)
            continue
        n, _t = line.split()
        submitted[int(n)] = 0.0
    assert child.wait(timeout=30) == 3 and tail == ["server handler ran\n"]
    missing = {f"row-{n}" for n in submitted} - rows_in(env)
    assert not missing, f"{len(missing)} submitted rows lost before the server's handler ran"


def test_hard_kill_loses_nothing_once_the_next_process_replays_the_journal(tmp_path):
    child, env = start_writer(tmp_path)
    submitted = read_submitted(child, until=300)
    child.kill()
    for line in child.stdout:  # rows acknowledged before the kill landed
        n, t = line.split()
        submitted[int(n)] = float(t)
    child.wait(timeout=30)
    before = rows_in(env)
    assert len(before) < len(submitted) or len(before) == len(submitted)
    replay = subprocess.run(
        [sys.executable, str(WRITER)], env={**env, "WRITER_REPLAY_ONLY": "1"}, capture_output=True, text=True
    )
    assert replay.returncode == 0, replay.stderr
    assert "replayed" in replay.stderr + replay.stdout
    stored = rows_in(env)
    missing = {f"row-{n}" for n in submitted} - stored
    assert not missing, f"{len(missing)} acknowledged rows lost after a hard kill and a replay"
    journals = Path(env["RANA_JOURNAL_DIR"])
    assert not list(journals.glob("*/*/seg-*")), "the dead process's journal is removed once replayed"


# --- the writer's own insert path and the coalesced announcements ----------------------------


def pending_completion(request_id, **fields) -> PendingRow:
    values = {"id": request_id, "created_at": timezone.now(), "source": "api", "outcome": "success"}
    return PendingRow(Completion, values | fields)


@pytest.mark.django_db(transaction=True)
def test_pending_rows_land_with_every_value_and_the_defaults(buffered_recorder):
    recorder = buffered_recorder()
    request_id = new_request_id()
    chain = FallbackChain.objects.create(name="Main", slug="main")
    started = timezone.now() - dt.timedelta(seconds=1)
    recorder.submit(
        pending_completion(
            request_id,
            chain_id=chain.pk,
            cost_usd=Decimal("0.0000012345"),
            latency_ms=12.5,
            fallback_used=True,
        )
    )
    recorder.submit(
        PendingRow(
            Attempt,
            {
                "completion_id": request_id,
                "chain": chain,  # a foreign key by name, as an instance
                "started_at": started,
                "source": "api",
                "step_position": 1,
                "provider_name": "p",
                "provider_kind": "simulated",
                "model": "m",
                "outcome": "success",
                "latency_ms": 3.25,
                "cost_usd": None,
            },
        )
    )
    assert recorder.flush(5)
    completion = Completion.objects.get(id=request_id)
    assert (completion.chain_id, completion.cost_usd, completion.latency_ms) == (
        chain.pk,
        Decimal("0.0000012345"),
        12.5,
    )
    assert completion.fallback_used is True and completion.unpriced is False  # given / default
    assert completion.error_message == "" and completion.answered_step is None  # defaults
    attempt = Attempt.objects.get(completion_id=request_id)
    assert (attempt.chain_id, attempt.started_at, attempt.step_position) == (chain.pk, started, 1)
    assert attempt.retry_index == 0 and attempt.cost_usd is None and attempt.injected is False


@pytest.mark.django_db(transaction=True)
def test_write_rows_without_announce_leaves_it_to_the_caller():
    heard: list[list] = []

    def listener(sender, rows, **kwargs):
        heard.append(rows)

    ledger_rows_written.connect(listener)
    try:
        written = write_rows([pending_completion(new_request_id())], announce=False)
        assert heard == [] and len(written) == 1
        announce_rows(written)
    finally:
        ledger_rows_written.disconnect(listener)
    [[row]] = heard
    assert isinstance(row, Completion) and row.outcome == "success"


@pytest.mark.django_db(transaction=True)
def test_listeners_hear_of_written_rows_in_coalesced_announcements(buffered_recorder):
    heard: list[list] = []

    def listener(sender, rows, **kwargs):
        heard.append(rows)

    ledger_rows_written.connect(listener)
    try:
        recorder = buffered_recorder(interval_s=0.01, announce_every_s=0.4)
        ids = []
        for _ in range(3):  # three batches, within one announcement period
            ids.append(new_request_id())
            recorder.submit(pending_completion(ids[-1]))
            wait_for(lambda i=ids[-1]: Completion.objects.filter(id=i).exists(), timeout_s=0.1)
        assert heard == []  # written (within the flush interval), not announced yet
        wait_for(lambda: heard, timeout_s=1.0)
        assert [sorted(row.pk for row in rows) for rows in heard] == [sorted(ids)]  # one announcement

        recorder.submit(pending_completion(new_request_id()))
        assert recorder.flush(5)  # flush() does not wait for the period: it announces now
        assert len(heard) == 2 and len(heard[1]) == 1
    finally:
        ledger_rows_written.disconnect(listener)


@pytest.mark.django_db(transaction=True)
def test_memory_mode_writes_rows_behind_without_a_journal(tmp_path, settings):
    """RANA_LEDGER_MODE=memory (the journal off, for bench/gateway_overhead.py to measure it)."""
    from providers.services.ledger_memory import MemoryRecorder

    settings.RANA_JOURNAL_DIR = str(tmp_path / "journal")
    recorder = MemoryRecorder(interval_s=0.02)
    ids = [new_request_id() for _ in range(30)]
    try:
        for completion_id in ids:
            recorder.submit(attempt_row(completion_id))
            recorder.call_started(PendingRow(Attempt, {"completion_id": completion_id}), None)
        assert recorder.flush(10) and recorder.backlog() == 0
    finally:
        recorder.close()
    assert Attempt.objects.filter(completion_id__in=ids).count() == 30  # call_started writes nothing
    assert not (tmp_path / "journal").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("memory_rows", [0, 20_000], ids=["decoded", "from-memory"])
def test_rows_taken_from_memory_or_decoded_from_the_journal_are_the_same(
    buffered_recorder, monkeypatch, memory_rows
):
    """The writer takes rows from memory while few wait, else decodes their journal lines."""
    from providers.services import ledger_writer

    monkeypatch.setattr(ledger_writer, "MEMORY_ROWS", memory_rows)
    decoded = []
    monkeypatch.setattr(ledger_writer, "decode", lambda line: decoded.append(line) or decode(line))
    recorder = buffered_recorder()
    request_id, now = new_request_id(), timezone.now()
    fields = dict(
        completion_id=request_id, started_at=now, source="api", step_position=0, provider_name="p",
        provider_kind="openai", model="m", outcome="success", latency_ms=1.5, cost_usd=Decimal("0.000123"),
    )  # fmt: skip
    recorder.submit(PendingRow(Attempt, fields))
    recorder.submit(
        PendingRow(Completion, dict(id=request_id, created_at=now, source="api", outcome="success"))
    )
    assert recorder.flush(5)
    assert len(decoded) == (0 if memory_rows else 2)
    assert len(recorder._in_memory) == 0  # nothing left behind either way
    attempt = Attempt.objects.get(completion_id=request_id)
    assert (attempt.started_at, attempt.cost_usd, attempt.latency_ms) == (now, Decimal("0.000123"), 1.5)
    assert Completion.objects.get(id=request_id).created_at == now
