"""A real Celery worker for the tests that need one, as production runs it.

`celery -A rana_site worker` (prefork, one pool process) in a subprocess of its own session, on
its own database and broker: pytest-django's test database lives in this process's
transaction (and may be in memory), where another process cannot see it. So a worker gets a
migrated SQLite file, or a fresh PostgreSQL database (tests.servers.fresh_database), which
tests seed with manage.py and read with plain SQL; and either broker folders in a tmp dir or a
queue of its own on the test Redis (RANA_TEST_REDIS_URL). Stopped with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery

from rana_site import broker_fs

ROOT = Path(__file__).resolve().parents[1]
TASKS = "tests.celery_tasks"


@dataclass(frozen=True)
class Broker:
    """Where a worker takes tasks from, and how the test sends them there."""

    env: dict[str, str]  # what the worker's settings read
    conf: dict[str, Any]  # the same, as Celery configuration for the sender
    queue: str = field(default_factory=lambda: f"rana-test-{uuid.uuid4().hex[:8]}")

    def send(self, task: str, **kwargs: Any) -> None:
        sender = Celery("rana-test-sender", set_as_current=False)
        sender.conf.update(self.conf)
        try:
            sender.send_task(task, kwargs=kwargs, queue=self.queue)
        finally:
            sender.close()


def filesystem_broker(folder: Path) -> Broker:
    conf = {
        "broker_url": "filesystem://",
        "broker_transport": "rana_site.broker_fs:Transport",
        "broker_transport_options": broker_fs.transport_options(folder),
    }
    return Broker({"CELERY_BROKER_URL": "filesystem://", "RANA_CELERY_DIR": str(folder)}, conf)


def redis_broker(url: str, *, visibility_timeout_s: int = 3600) -> Broker:
    env = {"CELERY_BROKER_URL": url, "RANA_BROKER_VISIBILITY_TIMEOUT_S": str(visibility_timeout_s)}
    return Broker(env, {"broker_url": url})


@dataclass
class Database:
    """The worker's database, read and seeded from outside (it is not pytest-django's)."""

    url: str

    def query(self, sql: str) -> list[tuple]:
        return self._run(sql, fetch=True)

    def execute(self, sql: str) -> None:
        self._run(sql, fetch=False)

    def _run(self, sql: str, *, fetch: bool) -> list[tuple]:
        if self.url.startswith("sqlite:///"):
            with sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=20) as db:
                cursor = db.execute(sql)
                return cursor.fetchall() if fetch else []
        import psycopg

        with psycopg.connect(self.url) as db:
            cursor = db.execute(sql)
            return cursor.fetchall() if fetch else []

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "rana_site.settings",
            "DATABASE_URL": self.url,
            "PYTHONPATH": str(ROOT),
            "LOG_LEVEL": "WARNING",
        }

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env(), capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


def moment(value: Any) -> dt.datetime:
    """A timestamp read back from SQLite (text, UTC) or PostgreSQL (aware), in UTC."""
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


@dataclass
class Worker:
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL to the worker's main process alone; its pool processes die with it."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        wait_for(lambda: not session_pids(self.process.pid), 10, "the worker's pool processes to die")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in session_pids(self.process.pid):  # nothing of it may outlive the test
            os.kill(pid, signal.SIGKILL)


def start_worker(database: Database, broker: Broker, log_path: Path, **env: str) -> Worker:
    command = [
        sys.executable, "-m", "celery", "-A", "rana_site", "worker",
        "--loglevel", "INFO", "--without-mingle", "--without-gossip", "--concurrency", "1",
        "--hostname", f"{broker.queue}-{uuid.uuid4().hex[:4]}@%h", "--queues", broker.queue,
        "--include", TASKS,
    ]  # fmt: skip
    worker_env = {**database.env(), "CELERY_TASK_ALWAYS_EAGER": "0", **broker.env, **env}
    with log_path.open("a") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    worker = Worker(process, log_path)
    try:
        wait_for(lambda: " ready." in worker.log() or process.poll() is not None, 60, "the worker")
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited at start-up:\n{worker.log()}")
    except BaseException:
        worker.stop()
        raise
    return worker


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}")
        time.sleep(0.1)
    return result


def session_pids(session: int) -> list[int]:
    """Live processes of a session (start_new_session: the worker's pid is its id)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session and fields[0] != "Z":  # session id; zombies are dead already
            pids.append(int(stat.parent.name))
    return pids
