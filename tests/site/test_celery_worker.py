"""Background work for real: tasks sent through the broker and run by a Celery worker process.

scripts/test runs the suite twice: the SQLite pass runs these with the broker folders
(rana_site/broker_fs.py) in a tmp dir, the PostgreSQL pass with the test Redis as broker
(tests/celery_worker.py). The worker has its own database, seeded with manage.py and read with
SQL: the rollup reconcile repairs a lost rollup hour; retention deletes exactly the ledger rows
older than RANA_RETENTION_DAYS and keeps the rest and every rollup; the health probes' task
probes a provider on the fake upstream and records a probe completion in the worker's database;
and a task whose worker is killed with SIGKILL mid-run runs again once another worker starts,
with its effect made once.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.celery_worker import (
    Broker,
    Database,
    filesystem_broker,
    moment,
    redis_broker,
    start_worker,
    wait_for,
)
from tests.servers import fresh_database, server_url

pytestmark = pytest.mark.timeout(120)

RETENTION_DAYS = 90


def _suite_on_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith("postgres")


@dataclass
class Stack:
    database: Database
    broker_kind: str  # filesystem or redis
    broker: Broker
    workdir: Path


def _broker(kind: str, workdir: Path, *, redis_db: int = 6, visibility_timeout_s: int = 3600) -> Broker:
    if kind == "filesystem":
        return filesystem_broker(workdir / "broker")
    url = server_url("RANA_TEST_REDIS_URL").rsplit("/", 1)[0] + f"/{redis_db}"
    return redis_broker(url, visibility_timeout_s=visibility_timeout_s)


@pytest.fixture(
    scope="module",
    params=[
        "sqlite+filesystem",
        pytest.param("postgres+redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ],
)
def stack(request, tmp_path_factory) -> Iterator[Stack]:
    """A migrated database and a broker: each pass of scripts/test runs the variant of its own database."""
    workdir = tmp_path_factory.mktemp("celery")
    if request.param == "sqlite+filesystem":
        if _suite_on_postgres():
            pytest.skip("the SQLite variant runs in scripts/test's SQLite pass")
        urls: Iterator[str] = iter([f"sqlite:///{workdir / 'rana.sqlite3'}"])
    else:
        if not _suite_on_postgres() and os.environ.get("RANA_TEST_POSTGRES_URL"):
            pytest.skip("the PostgreSQL variant runs in scripts/test's PostgreSQL pass")
        urls = fresh_database("rana_celery")
    database = Database(next(urls))
    try:
        database.manage("migrate", "--noinput", "-v0")
        kind = request.param.split("+")[1]
        yield Stack(database, kind, _broker(kind, workdir), workdir)
    finally:
        next(urls, None)  # drops the PostgreSQL database


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Iterator[None]:
    running = start_worker(
        stack.database, stack.broker, stack.workdir / "worker.log", RANA_RETENTION_DAYS=str(RETENTION_DAYS)
    )
    yield
    running.stop()


def _synth(database: Database, *, end: dt.datetime, days: float, seed: int) -> None:
    database.manage(
        "rana_synth_ledger", "--attempts", "200", "--days", str(days), "--seed", str(seed),
        "--end", end.isoformat(),
    )  # fmt: skip


def _hour(value) -> dt.datetime:
    return moment(value).replace(minute=0, second=0, microsecond=0)


def _raw_attempts_by_hour(database: Database, since: dt.datetime) -> Counter:
    rows = database.query("SELECT started_at, outcome FROM providers_attempt")
    return Counter((_hour(t), outcome) for t, outcome in rows if moment(t) >= since)


def _rollup_attempts_by_hour(database: Database, since: dt.datetime) -> Counter:
    rows = database.query("SELECT bucket, outcome, attempts FROM dashboards_attemptrollup WHERE grain = 'h'")
    counts = Counter()
    for bucket, outcome, attempts in rows:
        if moment(bucket) >= since and attempts:
            counts[(moment(bucket), outcome)] += attempts
    return counts


def _rollup_totals(database: Database) -> list[tuple]:
    return database.query(
        "SELECT grain, (SELECT sum(attempts) FROM dashboards_attemptrollup a WHERE a.grain = c.grain),"
        " sum(completions) FROM dashboards_completionrollup c GROUP BY grain ORDER BY grain"
    )


def test_the_worker_runs_the_reconcile_and_it_repairs_a_lost_rollup_hour(stack, worker):
    now = dt.datetime.now(dt.UTC)
    since = _hour(now - dt.timedelta(hours=20))
    _synth(stack.database, end=now - dt.timedelta(hours=2), days=0.5, seed=4)
    raw = _raw_attempts_by_hour(stack.database, since)
    assert _rollup_attempts_by_hour(stack.database, since) == raw
    stack.database.execute(  # the last hour's rows, as if a process had died before adding them
        "DELETE FROM dashboards_attemptrollup WHERE grain = 'h' AND bucket = "
        "(SELECT max(bucket) FROM dashboards_attemptrollup WHERE grain = 'h')"
    )
    assert _rollup_attempts_by_hour(stack.database, since) != raw

    stack.broker.send("dashboards.tasks.rollups_reconcile", hours=24)
    wait_for(lambda: _rollup_attempts_by_hour(stack.database, since) == raw, 60, "the reconcile")


def test_the_worker_runs_retention_which_prunes_exactly_the_old_rows_and_keeps_rollups(stack, worker):
    now = dt.datetime.now(dt.UTC)
    _synth(stack.database, end=now - dt.timedelta(days=RETENTION_DAYS + 10), days=3, seed=11)
    _synth(stack.database, end=now - dt.timedelta(hours=3), days=RETENTION_DAYS - 20, seed=12)
    cutoff = now - dt.timedelta(days=RETENTION_DAYS)
    completions = stack.database.query("SELECT id, created_at FROM providers_completion")
    kept = {str(c) for c, created in completions if moment(created) >= cutoff}
    attempts = stack.database.query("SELECT completion_id FROM providers_attempt")
    kept_attempts = sum(1 for (c,) in attempts if str(c) in kept)
    assert len(kept) < len(completions) and kept_attempts < len(attempts)
    rollups = _rollup_totals(stack.database)

    stack.broker.send("providers.tasks.ledger_retention")
    wait_for(
        lambda: stack.database.query("SELECT count(*) FROM providers_completion")[0][0] == len(kept),
        60,
        "retention",
    )
    assert {str(c) for (c,) in stack.database.query("SELECT id FROM providers_completion")} == kept
    assert stack.database.query("SELECT count(*) FROM providers_attempt")[0][0] == kept_attempts
    assert _rollup_totals(stack.database) == rollups


def test_the_worker_runs_the_probe_task_which_records_a_probe_completion(stack, worker, upstream):
    base_url = upstream.base_url_for("openai_compatible")
    stack.database.manage(
        "shell", "-c",
        "from providers.models import Provider; Provider.objects.create(name='probed', "
        f"kind='openai_compatible', base_url='{base_url}', probe_enabled=True, probe_model='primary')",
    )  # fmt: skip

    stack.broker.send("providers.tasks.probes_run")
    sql = (
        "SELECT c.outcome, c.chain_id, a.source, a.model, a.outcome FROM providers_completion c"
        " JOIN providers_attempt a ON a.completion_id = c.id"
        " WHERE c.source = 'probe' AND a.provider_name = 'probed'"
    )
    rows = wait_for(lambda: stack.database.query(sql), 30, "the probe's rows")
    assert rows == [("success", None, "probe", "primary", "success")]
    assert upstream.last_request.json["max_tokens"] == 1
    [(last_probe_at,)] = stack.database.query(
        "SELECT last_probe_at FROM providers_provider WHERE name = 'probed'"
    )
    assert last_probe_at is not None  # claimed: the next tick does not probe it again before its interval


@pytest.mark.parametrize("kind", ["filesystem", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_task_whose_worker_is_killed_runs_again_on_the_next_worker_with_one_effect(stack, kind, tmp_path):
    """acks_late: the message is acknowledged only once the task has run, so a worker that dies
    mid-task (SIGKILL) leaves it to the next worker; the task's effect is idempotent."""
    if kind != stack.broker_kind:
        pytest.skip(f"the {kind} broker runs in its own pass of scripts/test")
    # on Redis, a database of its own (its workers restore any message unacknowledged for 2 s)
    broker = _broker(kind, tmp_path, redis_db=7, visibility_timeout_s=2)
    marks = tmp_path / "marks"
    marks.mkdir()
    first = start_worker(stack.database, broker, tmp_path / "worker.log")
    try:
        broker.send("tests.celery_tasks.slow_once", folder=str(marks), seconds=120)
        wait_for(lambda: list(marks.glob("run-*")), 30, "the task to start")
    finally:
        first.kill()
    assert not (marks / "done").exists()

    second = start_worker(stack.database, broker, tmp_path / "worker.log")
    try:
        wait_for(lambda: (marks / "finished").exists(), 30, "the task to run again")
    finally:
        second.stop()
    assert len(list(marks.glob("run-*"))) == 2  # the killed run and the redelivered one
    assert (marks / "finished").read_text().split() == [(marks / "done").read_text()]  # one finished run
