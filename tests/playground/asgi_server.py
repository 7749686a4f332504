"""A real ASGI server (granian, as scripts/run uses) on a throwaway SQLite database.

pytest-django's live_server is a threaded WSGI server: it cannot stream server-sent events
or tell a view that the browser went away. Tests of those start this instead:

    with AsgiServer() as server:
        server.url("/playground/") ... server.query("SELECT outcome FROM providers_completion")

The database is migrated and seeded (a user, simulated providers, chains) by manage.py in
subprocesses with the server's environment; tests read it back with sqlite3.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
USERNAME, PASSWORD = "ada", "correct-horse-9"

# Two slow-ish simulated providers (tokens visibly arrive one by one) and a fast one.
SEED = """
from django.contrib.auth import get_user_model
import datetime
from providers.models import ChainStep, FallbackChain, ModelPrice, Provider
ModelPrice.objects.create(provider_kind="simulated", model="sim-small", input_per_mtok="0.15",
    output_per_mtok="0.60", effective_from=datetime.date(2025, 1, 1))
get_user_model().objects.create_user({username!r}, "ada@example.com", {password!r})
slow = {{"ttft_ms": 150, "tokens_per_s": {tokens_per_s}}}
primary = Provider.objects.create(name="sim-primary", kind="simulated", options=slow)
backup = Provider.objects.create(name="sim-backup", kind="simulated", options=slow)
fast = Provider.objects.create(name="sim-fast", kind="simulated", options={{"latency_ms": 40}})
demo = FallbackChain.objects.create(name="Demo", slug="demo", is_default=True, default_retries=0,
    backoff_base_s=0.1, step_timeout_s=10, first_token_timeout_s=5, deadline_s=30)
ChainStep.objects.create(chain=demo, position=0, provider=primary, model="sim-small")
ChainStep.objects.create(chain=demo, position=1, provider=backup, model="sim-large")
quick = FallbackChain.objects.create(name="Fast only", slug="fast", default_retries=0)
ChainStep.objects.create(chain=quick, position=0, provider=fast, model="sim-small")
"""


def form_data(**overrides: str) -> dict:
    """The playground form's fields, as the browser posts them."""
    data = {
        "chain": "two",
        "system": "",
        "message": "hello there playground",
        "temperature": "",
        "max_tokens": "",
        "top_p": "",
        "stop": "",
        "stream": "on",
        "fault-TOTAL_FORMS": "2",
        "fault-INITIAL_FORMS": "0",
        "fault-MIN_NUM_FORMS": "0",
        "fault-MAX_NUM_FORMS": "4",
    }
    data.update(overrides)
    return data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AsgiServer:
    def __init__(
        self, *, tokens_per_s: float = 12, extra_env: dict[str, str] | None = None, extra_seed: str = ""
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="rana-asgi-")
        self.db_path = Path(self._tmp.name) / "db.sqlite3"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.tokens_per_s = tokens_per_s
        self.extra_seed = extra_seed
        self.env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            "DEBUG": "1",
            "RANA_LEDGER_MODE": "sync",
            "RANA_ALLOWED_UPSTREAM_HOSTS": "127.0.0.1,localhost",
            "RANA_STATICFILES_STORAGE": "django.contrib.staticfiles.storage.StaticFilesStorage",
            "DJANGO_SETTINGS_MODULE": "rana_site.settings",
            "LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        self.env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        self._process: subprocess.Popen | None = None
        self.log_path = Path(self._tmp.name) / "server.log"

    def url(self, path: str) -> str:
        return self.base_url + path

    def manage(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True, capture_output=True
        )

    def start(self) -> AsgiServer:
        self.manage("migrate", "--noinput", "-v0")
        seed = SEED.format(username=USERNAME, password=PASSWORD, tokens_per_s=self.tokens_per_s)
        self.manage("shell", "-c", seed + self.extra_seed)
        self._log = self.log_path.open("wb")
        command = [str(VENV_BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--workers", "1", "--log-level", "warning"]
        self._process = subprocess.Popen(
            [*command, "rana_site.asgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"granian exited: {self.log_path.read_text()}")
            try:
                if httpx.get(self.url("/healthz"), timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"granian did not answer in {timeout_s}s: {self.log_path.read_text()}")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
            self._log.close()
        self._tmp.cleanup()

    def __enter__(self) -> AsgiServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple]:
        with sqlite3.connect(self.db_path, timeout=10) as db:
            return db.execute(sql, params).fetchall()

    def wait_for(self, sql: str, expected: list[tuple], timeout_s: float = 10) -> list[tuple]:
        """Poll a query until it returns `expected` (or the deadline passes); return the last rows."""
        deadline = time.monotonic() + timeout_s
        rows = self.query(sql)
        while rows != expected and time.monotonic() < deadline:
            time.sleep(0.05)
            rows = self.query(sql)
        return rows


def login(client: httpx.Client, server: AsgiServer) -> None:
    """Log an httpx client in through the real login form (CSRF included)."""
    page = client.get(server.url("/accounts/login/"))
    token = page.text.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    response = client.post(
        server.url("/accounts/login/"),
        data={"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Referer": server.url("/accounts/login/")},
    )
    assert response.status_code == 302, response.text[:500]
