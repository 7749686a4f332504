"""/metrics on a live RANA with two granian workers: every series sums both workers' traffic
(prometheus_client's multiprocess mode) and equals what the ledger holds."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes import FakeUpstream, Fault
from tests.site.test_worker_death import children, wait_for_workers

from .live import LiveGateway, start_gateway

TOKEN = "scrape-token-live-0123456789"
MAIN, FALLBACK = 20, 10  # requests on main (answered by primary) and on fallback (broken, then backup)


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[tuple[LiveGateway, Path]]:
    workdir = Path(tmp_path_factory.mktemp("metrics"))
    metrics_dir = workdir / "metrics"
    with FakeUpstream(models=("primary", "backup")) as fake:
        fake.set_default(Fault.error("server_error"), model="broken")
        env = {
            "RANA_METRICS": "1",
            "RANA_METRICS_TOKEN": TOKEN,
            "RANA_METRICS_DIR": str(metrics_dir),
            "RANA_BREAKER_ENABLED": "0",  # every fallback request calls "broken" first
        }
        gateway = start_gateway(upstream_url=fake.base_url, workdir=workdir, workers=2, extra_env=env)
        try:
            yield gateway, metrics_dir
        finally:
            gateway.stop()


def _scrape(gateway: LiveGateway, token: str | None = TOKEN) -> httpx.Response:
    root = gateway.base_url.removesuffix("/v1")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{root}/metrics", headers=headers, timeout=10)


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _by(samples: dict, name: str, *labels: str) -> dict[tuple, float]:
    out: Counter = Counter()
    for (sample, pairs), value in samples.items():
        if sample == name:
            got = dict(pairs)
            out[tuple(got[label] for label in labels)] += value
    return {k: v for k, v in out.items() if v}


def _send(gateway: LiveGateway) -> list[int]:
    key = gateway.keys["full"]

    def call(i: int) -> int:
        chain = "fallback" if i < FALLBACK else "main"
        body = {
            "model": chain,
            "messages": [{"role": "user", "content": f"prompt {i}"}],
            "stream": i % 5 == 4,
        }
        # A new connection per request, so both workers take some (they share one socket).
        with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
            return client.post(
                "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            ).status_code

    with ThreadPoolExecutor(6) as pool:
        return list(pool.map(call, range(MAIN + FALLBACK)))


def test_two_workers_series_sum_to_the_ledger(live):
    gateway, metrics_dir = live
    assert _send(gateway) == [200] * (MAIN + FALLBACK)
    total = MAIN + FALLBACK
    done = "select count(*) from providers_completion where outcome = 'success'"
    deadline = time.monotonic() + 10
    while gateway.query(done) != [(total,)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gateway.query(done) == [(total,)]
    pids = {path.stem.rsplit("_", 1)[-1] for path in metrics_dir.glob("counter_*.db")}
    assert len(pids) == 2, f"one worker took every request: {pids}"

    samples = _samples(_scrape(gateway).text)
    assert _by(samples, "rana_requests_total", "chain", "source", "outcome") == {
        ("main", "api", "success"): MAIN,
        ("fallback", "api", "success"): FALLBACK,
    }
    assert _by(samples, "rana_fallbacks_total", "chain") == {("fallback",): FALLBACK}
    ledger_attempts = {
        (provider, model, outcome): n
        for provider, model, outcome, n in gateway.query(
            "select provider_name, model, outcome, count(*) from providers_attempt group by 1, 2, 3"
        )
    }
    assert ledger_attempts == {
        ("fake", "primary", "success"): MAIN,
        ("fake", "broken", "server_error"): FALLBACK,
        ("fake", "backup", "success"): FALLBACK,
    }
    assert _by(samples, "rana_attempts_total", "provider", "model", "outcome") == ledger_attempts
    tokens = {}
    for model, inp, out in gateway.query(
        "select model, sum(input_tokens), sum(output_tokens) from providers_attempt group by model"
    ):
        tokens |= {("fake", model, "input"): inp, ("fake", model, "output"): out}
    assert _by(samples, "rana_tokens_total", "provider", "model", "direction") == {
        k: v for k, v in tokens.items() if v
    }
    costs = {
        ("fake", model): Decimal(str(cost))
        for model, cost in gateway.query(
            "select model, sum(cost_usd) from providers_attempt where cost_usd is not null group by model"
        )
    }
    scraped = _by(samples, "rana_cost_usd_total", "provider", "model")
    assert scraped.keys() == {k for k, v in costs.items() if v}
    for key, value in scraped.items():
        assert value == pytest.approx(float(costs[key]), rel=1e-9)
    assert sum(_by(samples, "rana_request_duration_seconds_count", "chain").values()) == total
    assert _by(samples, "rana_time_to_first_token_seconds_count", "chain", "provider")
    assert samples[("rana_circuit_state", (("model", "broken"), ("provider", "fake")))] == 0
    assert ("rana_ledger_backlog_rows", ()) in samples

    rows = gateway.query("select count(*) from providers_completion")[0][0]
    rows += gateway.query("select count(*) from providers_attempt")[0][0]
    deadline = time.monotonic() + 10  # the writer counts its lag once it has committed
    while time.monotonic() < deadline:
        lag = _samples(_scrape(gateway).text).get(("rana_ledger_lag_seconds_count", ()), 0)
        if lag >= rows:
            break
        time.sleep(0.1)
    assert lag >= rows


def test_scrape_needs_the_token(live):
    gateway, _ = live
    assert _scrape(gateway, token=None).status_code == 401
    assert _scrape(gateway, token="wrong").status_code == 403
    assert _scrape(gateway).status_code == 200


def test_a_dead_workers_counts_stay_and_its_live_gauge_goes(live):
    gateway, metrics_dir = live
    assert _send(gateway) == [200] * (MAIN + FALLBACK)
    master = gateway.process.pid
    workers = children(master)
    served = [pid for pid in workers if (metrics_dir / f"counter_{pid}.db").exists()]
    victim = next(pid for pid in served if (metrics_dir / f"gauge_livesum_{pid}.db").exists())
    before = _by(_samples(_scrape(gateway).text), "rana_requests_total", "chain")
    assert sum(before.values()) >= MAIN + FALLBACK
    os.kill(victim, signal.SIGKILL)
    wait_for_workers(master, len(workers), without={victim})
    deadline = time.monotonic() + 10  # the replacement drops it as it starts
    while (metrics_dir / f"gauge_livesum_{victim}.db").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (metrics_dir / f"gauge_livesum_{victim}.db").exists()
    assert (metrics_dir / f"counter_{victim}.db").exists()
    assert _by(_samples(_scrape(gateway).text), "rana_requests_total", "chain") == before
