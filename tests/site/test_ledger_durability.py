"""The ledger survives the process: a worker killed with SIGKILL under load, or a database
locked for minutes, loses no row.

A real RANA (scripts/serve, two granian workers, buffered ledger with its journal) over a
flaky chain on the fake upstream (the first step answers 503 half the time), driven by 20
clients. Counted afterwards, once the dead worker's journal has been replayed: every request
answered 200 has its completion; every call the fake upstream received has its attempt row;
no attempt lacks its completion; and the x-rana-attempts of the answered requests add up to
their attempt rows. On SQLite and, through scripts/test, on PostgreSQL.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.fakes import FakeUpstream, Fault
from tests.gateway.live import LiveGateway, start_gateway
from tests.servers import fresh_database

CLIENTS = 20
RUN_S = float(os.environ.get("RANA_TEST_KILL_RUN_S", "30"))
LOCK_S = float(os.environ.get("RANA_TEST_DB_LOCK_S", "120"))
ENV = {"RANA_BREAKER_ENABLED": "0", "RANA_LEDGER_FLUSH_MS": "50"}


def flaky(record) -> Fault:
    return Fault.error("server_error") if random.random() < 0.5 else Fault.ok()


@dataclass
class Load:
    """Closed-loop clients until stopped: what each request got."""

    base_url: str
    key: str
    answers: list[tuple[int, str, int, float]] = field(default_factory=list)  # status, id, attempts, t
    errors: Counter = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)

    def client(self, n: int) -> None:
        body = {"model": "main", "messages": [{"role": "user", "content": f"hello {n}"}]}
        headers = {"authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.base_url, timeout=30) as http:
            while not self.stop.is_set():
                try:
                    payload = {**body, "stream": n % 4 == 0}
                    response = http.post("/chat/completions", json=payload, headers=headers)
                    response.read()
                except httpx.HTTPError as exc:
                    self.errors[type(exc).__name__] += 1
                    continue
                self.answers.append(
                    (
                        response.status_code,
                        response.headers.get("x-rana-request-id", ""),
                        int(response.headers.get("x-rana-attempts", 0)),
                        time.monotonic(),
                    )
                )

    def run(self, seconds: float, during: Callable[[], None] | None = None, at: float = 0.0) -> None:
        threads = [threading.Thread(target=self.client, args=(n,), daemon=True) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            if during is not None:
                time.sleep(at)
                during()
                time.sleep(max(0.0, seconds - at))
            else:
                time.sleep(seconds)
        finally:  # a failure or a timeout must not leave clients running
            self.stop.set()
            for thread in threads:
                thread.join(60)


def worker_pids(master: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{master}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children


class Ledger:
    """The server's ledger, read directly (SQLite file or PostgreSQL URL)."""

    def __init__(self, gateway: LiveGateway, database_url: str | None) -> None:
        self.gateway, self.database_url = gateway, database_url

    def query(self, sql: str) -> list[tuple]:
        if self.database_url is None:
            return self.gateway.query(sql)
        import psycopg

        with psycopg.connect(self.database_url) as db:
            return db.execute(sql).fetchall()

    def completions(self) -> set[str]:
        return {str(r[0]).replace("-", "") for r in self.query("SELECT id FROM providers_completion")}

    def attempts(self) -> int:
        return self.query("SELECT count(*) FROM providers_attempt")[0][0]

    def attempts_of(self, requests: set[str]) -> int:
        rows = self.query("SELECT completion_id FROM providers_attempt")
        return sum(1 for (cid,) in rows if str(cid).replace("-", "") in requests)


def _suite_on_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith("postgres")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request) -> Iterator[str | None]:
    """The live server's database. scripts/test runs the suite twice (SQLite, then PostgreSQL):
    each pass runs the variant of its own database, not both twice."""
    if request.param == "sqlite":
        if _suite_on_postgres():
            pytest.skip("the SQLite variant runs in scripts/test's SQLite pass")
        yield None
        return
    if not _suite_on_postgres() and os.environ.get("RANA_TEST_POSTGRES_URL"):
        pytest.skip("the PostgreSQL variant runs in scripts/test's PostgreSQL pass")
    yield from fresh_database("rana_durable")


def _settled(ledger: Ledger, want: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not want() and time.monotonic() < deadline:
        time.sleep(0.25)


@pytest.mark.timeout(RUN_S + 180)
def test_a_worker_killed_under_load_costs_only_its_requests_and_loses_no_row(tmp_path, database_url):
    with FakeUpstream(models=("primary", "backup"), record_limit=1_000_000) as fake:
        fake.set_default(flaky, model="primary")
        env = {**ENV, **({"DATABASE_URL": database_url} if database_url else {})}
        gateway = start_gateway(upstream_url=fake.base_url, workdir=tmp_path, workers=2, extra_env=env)
        ledger = Ledger(gateway, database_url)
        try:
            load = Load(gateway.base_url, gateway.keys["full"])
            workers = worker_pids(gateway.process.pid)
            assert len(workers) == 2, workers
            killed: list[float] = []

            def kill_one() -> None:
                os.kill(workers[0], signal.SIGKILL)
                killed.append(time.monotonic())

            load.run(RUN_S, during=kill_one, at=RUN_S / 3)
            assert gateway.process.poll() is None, "the master must outlive its worker"
            replacement = set(worker_pids(gateway.process.pid)) - set(workers)
            assert replacement, "the dead worker is replaced"
            ok = [a for a in load.answers if a[0] == 200]
            failed = [a for a in load.answers if a[0] != 200]
            lost = len(failed) + sum(load.errors.values())
            assert lost <= 2 * CLIENTS, (lost, Counter(a[0] for a in failed), load.errors)
            late = [a for a in failed if a[3] > killed[0] + 8]
            assert not late, f"{len(late)} requests failed well after the kill"
            assert len(ok) > 200
            hits = [r for r in fake.requests if r.path.endswith("/chat/completions")]
            answered = {a[1].replace("-", "") for a in ok}
            _settled(ledger, lambda: answered <= ledger.completions() and ledger.attempts() >= len(hits))
            missing = answered - ledger.completions()
            assert not missing, f"{len(missing)} answered requests have no completion row"
            attempts = ledger.attempts()
            assert len(hits) <= attempts <= len(hits) + CLIENTS, (len(hits), attempts)
            assert "replayed" in gateway.log_path.read_text()  # the dead worker's journal
            orphans = ledger.query(
                "SELECT count(*) FROM providers_attempt a LEFT JOIN providers_completion c "
                "ON c.id = a.completion_id WHERE c.id IS NULL"
            )[0][0]
            assert orphans == 0
            assert ledger.attempts_of(answered) == sum(a[2] for a in ok)
        finally:
            gateway.stop()


@pytest.mark.skipif(_suite_on_postgres(), reason="a SQLite lock: runs in scripts/test's SQLite pass")
@pytest.mark.timeout(LOCK_S + 300)  # the lock, the load around it, and writing what waited
def test_a_database_locked_for_minutes_under_load_loses_no_row_and_memory_stays_flat(tmp_path):
    with FakeUpstream(models=("primary", "backup"), record_limit=1_000_000) as fake:
        gateway = start_gateway(upstream_url=fake.base_url, workdir=tmp_path, workers=2, extra_env=ENV)
        ledger = Ledger(gateway, None)
        try:
            load = Load(gateway.base_url, gateway.keys["full"])
            workers = worker_pids(gateway.process.pid)
            rss: dict[str, list[int]] = {"before": [], "after": []}
            locked = threading.Event()

            def rss_of(pid: int) -> int:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
                return 0

            def hold_the_lock() -> None:
                db = sqlite3.connect(gateway.db_path, timeout=30, isolation_level=None)
                db.execute("BEGIN EXCLUSIVE")
                locked.set()
                time.sleep(LOCK_S)
                db.execute("COMMIT")
                db.close()

            def lock() -> None:
                rss["before"] = [rss_of(pid) for pid in workers]
                threading.Thread(target=hold_the_lock, daemon=True).start()
                assert locked.wait(30)

            load.run(LOCK_S + 5, during=lock, at=2)
            rss["after"] = [rss_of(pid) for pid in workers]
            ok = [a for a in load.answers if a[0] == 200]
            statuses = Counter(a[0] for a in load.answers)
            assert len(ok) == len(load.answers) and not load.errors, (statuses, load.errors)
            grown = max(after - before for before, after in zip(rss["before"], rss["after"], strict=True))
            assert grown < 64 * 2**20, (
                f"a worker grew by {grown / 2**20:.0f} MB while the database was locked"
            )
            answered = {a[1].replace("-", "") for a in ok}
            _settled(ledger, lambda: answered <= ledger.completions(), timeout_s=120)
            missing = answered - ledger.completions()
            assert not missing, f"{len(missing)} of {len(answered)} answered requests have no completion row"
            assert ledger.attempts_of(answered) == ledger.attempts() == sum(a[2] for a in ok)
        finally:
            gateway.stop()
