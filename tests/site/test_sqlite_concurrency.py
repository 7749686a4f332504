"""Concurrent writers on the default SQLite file: no 500, and every row written.

A real RANA (scripts/serve, two granian workers, buffered ledger) on a SQLite file, driven
at once by compare runs (two runs executed concurrently inside one request), playground
sends and API requests, while another process's writer takes the database's write lock
over and over. Every answer must be a success and every run, completion and attempt row
must be in the database afterwards.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.gateway.live import LiveGateway, start_gateway
from tests.playground.asgi_server import form_data

USERNAME, PASSWORD = "ada", "correct-horse-9"
SEED = f"""
from django.contrib.auth import get_user_model
from providers.models import ChainStep, FallbackChain, Provider
get_user_model().objects.create_user({USERNAME!r}, "ada@example.com", {PASSWORD!r})
first = Provider.objects.create(name="first", kind="simulated", options={{"latency_ms": 5}})
second = Provider.objects.create(name="second", kind="simulated", options={{"latency_ms": 5}})
for slug, provider in (("sim-a", first), ("sim-b", second)):
    chain = FallbackChain.objects.create(name=slug, slug=slug, default_retries=0, backoff_base_s=0)
    ChainStep.objects.create(chain=chain, position=0, provider=provider, model="m1")
"""
COMPARES, SENDS, API_CALLS = 24, 48, 120


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[LiveGateway]:
    with FakeUpstream() as fake:
        gateway = start_gateway(
            upstream_url=fake.base_url, workdir=tmp_path_factory.mktemp("sqlite-load"), workers=2
        )
        try:
            done = gateway.manage("shell", "-c", SEED)
            assert done.returncode == 0, done.stderr
            yield gateway
        finally:
            gateway.stop()


def _logged_in(site: str) -> httpx.Client:
    client = httpx.Client(base_url=site, timeout=60)
    page = client.get("/accounts/login/")
    token = page.text.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    response = client.post(
        "/accounts/login/", data={"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302, response.text[:300]
    client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
    return client


def _contending_writer(db_path: str, stop: threading.Event) -> int:
    """Another process's writer: holds the write lock 20 ms out of every 50 ms."""
    held = 0
    db = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    while not stop.is_set():
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE auth_user SET last_name = last_name")
        time.sleep(0.02)
        db.execute("COMMIT")
        held += 1
        time.sleep(0.03)
    db.close()
    return held


def _compare(client: httpx.Client) -> int:
    data = form_data(chain="sim-a", chain_b="sim-b", stream="")
    response = client.post("/playground/compare", data=data)
    assert response.text.count('data-completion-outcome="success"') == 2 or response.status_code != 200
    return response.status_code


def _send(client: httpx.Client) -> int:
    return client.post("/playground/send", data=form_data(chain="sim-a", stream="")).status_code


def _api(api: httpx.Client, key: str, i: int) -> int:
    body = {"model": "main", "messages": [{"role": "user", "content": f"hello {i}"}], "stream": i % 3 == 0}
    response = api.post("/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    return response.status_code


def test_concurrent_playground_and_api_writes_never_fail_and_lose_no_row(live: LiveGateway):
    site = live.base_url.removesuffix("/v1")
    clients = [_logged_in(site) for _ in range(4)]
    api = httpx.Client(base_url=live.base_url, timeout=60)
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=12) as pool:
        writer = pool.submit(_contending_writer, str(live.db_path), stop)
        try:
            jobs = [pool.submit(_compare, clients[i % 4]) for i in range(COMPARES)]
            jobs += [pool.submit(_send, clients[i % 4]) for i in range(SENDS)]
            jobs += [pool.submit(_api, api, live.keys["full"], i) for i in range(API_CALLS)]
            statuses = Counter(job.result() for job in jobs)
        finally:
            stop.set()
        assert writer.result() > 10  # the lock really was contended throughout

    assert statuses == {200: COMPARES + API_CALLS, 302: SENDS}, statuses
    runs = live.query("SELECT status, outcome, count(*) FROM playground_playgroundrun GROUP BY 1, 2")
    assert runs == [("done", "success", 2 * COMPARES + SENDS)]
    expected = [("api", "success", API_CALLS), ("playground", "success", 2 * COMPARES + SENDS)]
    sql = "SELECT source, outcome, count(*) FROM providers_completion GROUP BY 1, 2 ORDER BY 1, 2"
    deadline = time.monotonic() + 10
    while (rows := live.query(sql)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)  # the ledger is written behind the response
    assert rows == expected
    orphans = (
        "SELECT count(*) FROM providers_attempt"
        " WHERE completion_id NOT IN (SELECT id FROM providers_completion)"
    )
    assert live.query(orphans) == [(0,)]
    assert live.query("SELECT count(*) FROM providers_attempt") == [(API_CALLS + 2 * COMPARES + SENDS,)]
    assert "Internal Server Error" not in live.log_path.read_text()
