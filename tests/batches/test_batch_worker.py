"""A batch run by a REAL Celery worker that is killed (SIGKILL) mid-batch and started again:
200 prompts through a flaky chain (the fake's "primary" fails every fourth prompt; "backup"
answers it) end with exactly 200 answered rows, and no row that had finished before the kill
runs again (the fake counts its answers per prompt). The SQLite pass uses the folder broker,
the PostgreSQL pass the test Redis (tests/celery_worker.py, as tests/site/test_celery_worker.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.batches.conftest import prompt_of
from tests.celery_worker import (
    ROOT,
    Broker,
    Database,
    filesystem_broker,
    redis_broker,
    start_worker,
    wait_for,
)
from tests.fakes import FakeUpstream, Fault
from tests.servers import fresh_database, server_url

pytestmark = pytest.mark.timeout(120)

ROWS = 200
CREATE = """
from batches.services import create
create._enqueue = lambda batch_id: None  # the test sends the task itself
lines = ["id,prompt"] + [f"r{i},prompt number {i}" for i in range(ROWS)]
batch = create.batch_create(data="\\n".join(lines).encode(), filename="p.csv", chain_slug="main",
    owner=create.BatchOwner(), concurrency=4)
print(batch.pk)
"""


def _on_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith("postgres")


@pytest.fixture(
    params=[
        "sqlite+filesystem",
        pytest.param("postgres+redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
def stack(request, tmp_path) -> Iterator[tuple[Database, Broker]]:
    if request.param == "sqlite+filesystem":
        if _on_postgres():
            pytest.skip("the SQLite variant runs in scripts/test's SQLite pass")
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path / 'rana.sqlite3'}"])
        broker = filesystem_broker(tmp_path / "broker")
    else:
        if not _on_postgres() and os.environ.get("RANA_TEST_POSTGRES_URL"):
            pytest.skip("the PostgreSQL variant runs in scripts/test's PostgreSQL pass")
        urls = fresh_database("rana_batches")
        # a Redis database of its own; its workers restore a message unacknowledged for 2 s
        broker = redis_broker(
            server_url("RANA_TEST_REDIS_URL").rsplit("/", 1)[0] + "/8", visibility_timeout_s=2
        )
    database = Database(next(urls))
    try:
        database.manage("migrate", "--noinput", "-v0")
        yield database, broker
    finally:
        next(urls, None)


@pytest.fixture
def fake() -> Iterator[tuple[FakeUpstream, Counter]]:
    answered: Counter = Counter()
    lock = threading.Lock()

    def answer(request) -> Fault:
        prompt = prompt_of(request)
        if request.model == "primary" and int(prompt.split()[-1]) % 4 == 0:
            return Fault.error("server_error")
        with lock:
            answered[prompt] += 1
        return Fault.ok(delay_s=0.03)

    with FakeUpstream(models=("primary", "backup")) as upstream:
        upstream.set_default(answer)
        yield upstream, answered


def _seed(database: Database, upstream: FakeUpstream) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tests.gateway.seed", upstream.base_url], cwd=ROOT, env=database.env(),
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return database.manage("shell", "-c", CREATE.replace("ROWS", str(ROWS))).strip().splitlines()[-1]


def _done_rows(database: Database, batch_id: str) -> dict[int, str]:
    rows = database.query(
        f"SELECT \"index\", request_id FROM batches_batchrow WHERE batch_id = '{batch_id.replace('-', '')}'"
        if database.url.startswith("sqlite")
        else f"SELECT \"index\", request_id FROM batches_batchrow WHERE batch_id = '{batch_id}'"
    )
    return {index: str(request_id) for index, request_id in rows if request_id}


def _status(database: Database, batch_id: str) -> str:
    key = batch_id.replace("-", "") if database.url.startswith("sqlite") else batch_id
    return database.query(f"SELECT status FROM batches_batch WHERE id = '{key}'")[0][0]


def test_a_batch_survives_its_worker_killed_mid_run_with_every_row_answered_once(stack, fake, tmp_path: Path):
    database, broker = stack
    upstream, answered = fake
    batch_id = _seed(database, upstream)
    env = {"RANA_ALLOWED_UPSTREAM_HOSTS": "127.0.0.1", "RANA_BATCH_LEASE_S": "2"}

    first = start_worker(database, broker, tmp_path / "worker.log", **env)
    try:
        broker.send("batches.tasks.batch_run_task", batch_id=batch_id)
        wait_for(lambda: len(_done_rows(database, batch_id)) >= 40, 60, "40 rows to finish")
    finally:
        first.kill()
    before = _done_rows(database, batch_id)
    answered_before = dict(answered)
    assert 40 <= len(before) < ROWS  # killed mid-batch

    second = start_worker(database, broker, tmp_path / "worker.log", **env)
    try:
        wait_for(lambda: _status(database, batch_id) == "done", 90, "the batch to finish on the next worker")
    finally:
        second.stop()

    after = _done_rows(database, batch_id)
    assert sorted(after) == list(range(ROWS))  # exactly one result row per prompt
    statuses = database.query("SELECT status, count(*) FROM batches_batchrow GROUP BY status")
    assert statuses == [("done", ROWS)]
    assert {i: after[i] for i in before} == before  # finished rows were not written again
    for index in before:  # ... nor asked again: no new answer for their prompts after the kill
        assert answered[f"prompt number {index}"] == answered_before[f"prompt number {index}"] == 1
    asked_twice = [p for p, n in answered.items() if n > 1]
    assert len(asked_twice) <= 4  # at most the rows in flight at the kill (concurrency 4)
    assert len(answered) == ROWS
