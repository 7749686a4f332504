"""Streaming and Stop against the real ASGI server (granian), not Django's test client."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.playground.asgi_server import AsgiServer, form_data, login

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server() -> Iterator[AsgiServer]:
    with AsgiServer(tokens_per_s=12) as server:
        yield server


@pytest.fixture
def client(server: AsgiServer) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15) as client:
        login(client, server)
        yield client


def send(client: httpx.Client, server: AsgiServer, **fields: str) -> str:
    data = form_data(chain="demo", message="please count slowly from one to twenty for me", **fields)
    headers = {"HX-Request": "true", "X-CSRFToken": client.cookies["csrftoken"]}
    response = client.post(server.url("/playground/send"), data=data, headers=headers)
    assert response.status_code == 200, response.text[:500]
    return re.search(r'id="turn-([0-9a-f-]{36})"', response.text).group(1)


def run_row(server: AsgiServer, run_id: str) -> tuple:
    rows = server.query(
        "SELECT status, outcome, completion_id FROM playground_playgroundrun WHERE id = ?",
        (run_id.replace("-", ""),),
    )
    return rows[0]


def test_tokens_arrive_one_by_one_before_the_end(server, client):
    run_id = send(client, server)
    arrivals: list[float] = []
    started = time.perf_counter()
    with client.stream("GET", server.url(f"/playground/runs/{run_id}/stream")) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert "content-encoding" not in response.headers
        for line in response.iter_lines():
            if line.startswith("event: "):
                arrivals.append((time.perf_counter() - started, line[7:]))
    tokens = [t for t, name in arrivals if name == "token"]
    assert arrivals[-1][1] == "done" and len(tokens) > 10
    assert tokens[-1] - tokens[0] > 0.5  # spread out as the upstream sends them, not buffered
    assert run_row(server, run_id)[:2] == ("done", "success")


def test_closing_the_connection_mid_stream_cancels_and_records_it(server, client):
    run_id = send(client, server)
    with client.stream("GET", server.url(f"/playground/runs/{run_id}/stream")) as response:
        for line in response.iter_lines():
            if line == "event: token":
                break
    # The connection is closed here, mid-stream (as when the browser's EventSource is closed).
    deadline = time.monotonic() + 10
    while run_row(server, run_id)[0] != "done" and time.monotonic() < deadline:
        time.sleep(0.05)
    status, outcome, completion_id = run_row(server, run_id)
    assert (status, outcome) == ("done", "cancelled")
    completion = server.wait_for(
        f"SELECT outcome FROM providers_completion WHERE id = '{completion_id}'", [("cancelled",)]
    )
    assert completion == [("cancelled",)]
    attempts = server.query(f"SELECT outcome FROM providers_attempt WHERE completion_id = '{completion_id}'")
    assert attempts == [("cancelled",)]
