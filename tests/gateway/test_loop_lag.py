"""The event-loop lag probe (benchmarks only): off by default, on with RANA_LOOP_LAG_DIR."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from gateway.api import loop_lag
from gateway.api.loop_lag import EDGES_MS, Histogram, loop_lag_start, loop_lag_stop
from gateway.asgi import ApiRouter


@pytest.fixture(autouse=True)
def _no_probe_left():
    yield
    assert loop_lag._probe is None or loop_lag._probe._task is None


def test_histogram_buckets_by_upper_edge():
    histogram = Histogram()
    for ms in (0.0, 0.05, 0.07, 1.0, 4.0, 10_000.0):
        histogram.add(ms)
    counts = histogram.counts
    assert counts[0] == 2  # 0 and 0.05: up to the first edge
    assert counts[1] == 1  # 0.07
    assert counts[EDGES_MS.index(1.0)] == 1
    assert counts[EDGES_MS.index(5.0)] == 1
    assert counts[-1] == 1  # past the last edge
    assert histogram.count == 6 and histogram.max_ms == 10_000.0


async def test_off_unless_the_variable_is_set(settings, tmp_path):
    settings.RANA_LOOP_LAG_DIR = ""
    assert loop_lag_start() is None
    await loop_lag_stop()
    assert not list(tmp_path.iterdir())


async def test_records_a_blocked_loop_and_writes_the_histogram(settings, tmp_path):
    settings.RANA_LOOP_LAG_DIR = str(tmp_path / "lag")
    probe = loop_lag_start()
    assert probe is not None
    try:
        await asyncio.sleep(0.05)
        busy_until = time.perf_counter() + 0.03
        while time.perf_counter() < busy_until:  # the loop cannot run anything else for 30 ms
            pass
        await asyncio.sleep(0.05)
    finally:
        await loop_lag_stop()
    [path] = (tmp_path / "lag").glob("loop-lag-*.json")
    figures = json.loads(path.read_text())
    assert figures["lag"]["count"] > 10
    assert figures["lag"]["max_ms"] >= 25
    assert sum(figures["lag"]["counts"]) == figures["lag"]["count"]
    [stall] = [s for s in figures["stalls"] if s["lag_ms"] >= 25]
    # The loop's own thread was busy (running, or waiting for a CPU on a loaded machine).
    assert stall["running_ms"] + stall["runqueue_ms"] >= 20
    assert set(figures["gc_pauses"]) == {"0", "1", "2"}


async def test_the_lifespan_starts_and_stops_it(settings, tmp_path):
    settings.RANA_LOOP_LAG_DIR = str(tmp_path)
    messages = asyncio.Queue()
    sent: list[dict] = []

    async def receive():
        return await messages.get()

    async def send(message):
        sent.append(message)

    router = ApiRouter(app=None)  # type: ignore[arg-type]
    lifespan = asyncio.create_task(router({"type": "lifespan"}, receive, send))
    await messages.put({"type": "lifespan.startup"})
    await asyncio.sleep(0.05)
    assert loop_lag._probe is not None and loop_lag._probe._task is not None
    await messages.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(lifespan, 10)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert loop_lag._probe is None
    assert list(tmp_path.glob("loop-lag-*.json"))


async def test_the_router_freezes_the_warm_heap_once(monkeypatch):
    frozen = []
    monkeypatch.setattr("gateway.asgi.gc.freeze", lambda: frozen.append(1))
    monkeypatch.setattr("gateway.asgi.FREEZE_AFTER_REQUESTS", 3)

    async def serve(scope, receive, send):
        return None

    monkeypatch.setattr("gateway.asgi.serve_api", serve)
    router = ApiRouter(app=None)  # type: ignore[arg-type]
    for _ in range(10):
        await router({"type": "http", "path": "/v1/models"}, None, None)  # type: ignore[arg-type]
    assert frozen == [1]
