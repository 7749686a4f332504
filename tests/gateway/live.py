"""A live RANA on 127.0.0.1: a fresh migrated SQLite file, seeded chains and keys, served by
scripts/serve (granian, ASGI) exactly as scripts/run serves it. Used by the SDK tests and
by bench/gateway_overhead.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveGateway:
    base_url: str  # http://127.0.0.1:PORT/v1
    keys: dict[str, str]
    db_path: Path
    process: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(repr=False, default_factory=dict)

    def query(self, sql: str, params: tuple = ()) -> list[tuple[Any, ...]]:
        """Read the server's database (the ledger) directly."""
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5) as db:
            return db.execute(sql, params).fetchall()

    def poll(self, sql: str, params: tuple = (), *, timeout: float = 5.0) -> list[tuple[Any, ...]]:
        """Rows of a query once there are any (the ledger is written behind the request)."""
        deadline = time.monotonic() + timeout
        while not (rows := self.query(sql, params)) and time.monotonic() < deadline:
            time.sleep(0.01)
        return rows

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wait_ready(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited at start-up:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the gateway did not answer {url} within {timeout}s:\n{log_path.read_text()}")


def start_gateway(
    *, upstream_url: str, workdir: Path, workers: int = 1, extra_env: dict[str, str] | None = None
) -> LiveGateway:
    """Migrate and seed a database in `workdir`, then serve it; stop() it when done."""
    db_path = workdir / "rana.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "rana_site.settings",
        "DATABASE_URL": f"sqlite:///{db_path}",
        "DEBUG": "1",
        "RANA_ALLOWED_UPSTREAM_HOSTS": "127.0.0.1",
        "RANA_LEDGER_MODE": "buffered",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
        **(extra_env or {}),
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    seeded = subprocess.run(
        [sys.executable, "-m", "tests.gateway.seed", upstream_url],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    port = free_port()
    log_path = workdir / "server.log"
    server_env = {**env, "RANA_HOST": "127.0.0.1", "RANA_PORT": str(port), "RANA_WORKERS": str(workers)}
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(ROOT / "scripts" / "serve")], cwd=ROOT, env=server_env, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    _wait_ready(f"{base}/healthz", process, log_path)
    keys = json.loads(seeded.stdout)["keys"]
    return LiveGateway(f"{base}/v1", keys, db_path, process, log_path, env)
