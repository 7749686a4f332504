"""How much time the providers service adds over calling the upstream directly.

    .venv/bin/python bench/engine_overhead.py [--requests 2000] [--concurrency 1 20]

Starts the fake upstream (tests/fakes) in its own process on 127.0.0.1, a throwaway SQLite
ledger with the write-behind recorder (ledger writes included), and two chains: `one`
(a single OpenAI-compatible step) and `fallback` (a step whose model always answers 503,
then the good step). For each scenario and concurrency it interleaves direct httpx calls
with the same shared client (the baseline: one call, or for fallback the failing call then
the good one) and service calls, and prints p50/p99 of both and of the difference.
The circuit breaker is off unless --breaker: with it, the failing step is skipped after a
few requests and "fallback" stops calling it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB_DIR = tempfile.mkdtemp(prefix="rana-bench-")
os.environ.update(
    {
        "DJANGO_SETTINGS_MODULE": "rana_site.settings",
        "DATABASE_URL": f"sqlite:///{DB_DIR}/bench.sqlite3",
        "RANA_ALLOWED_UPSTREAM_HOSTS": "127.0.0.1",
        "RANA_LEDGER_MODE": "buffered",
        "DEBUG": "1",
        "LOG_LEVEL": "WARNING",
        # The breaker would skip the always-failing step after a few requests; measure real
        # fallbacks unless --breaker is given.
        "RANA_BREAKER_ENABLED": "1" if "--breaker" in sys.argv else "0",
    }
)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from providers.http_client import shared_client  # noqa: E402
from providers.models import Attempt, ChainStep, FallbackChain, Provider  # noqa: E402
from providers.services.completions import complete  # noqa: E402
from providers.services.recorder import ledger_flush  # noqa: E402

MESSAGES = [{"role": "user", "content": "Say hello in five words."}]


def start_upstream() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes", "--models", "good,bad", "--fail-model", "bad"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()  # "fake upstream on http://127.0.0.1:PORT (...)"
    return proc, line.split()[3]


def make_chains(base_url: str) -> None:
    call_command("migrate", verbosity=0)
    provider = Provider.objects.create(name="fake", kind="openai_compatible", base_url=base_url + "/v1")
    one = FallbackChain.objects.create(name="one", slug="one", default_retries=0)
    ChainStep.objects.create(chain=one, position=0, provider=provider, model="good")
    fallback = FallbackChain.objects.create(name="fallback", slug="fallback", default_retries=0)
    ChainStep.objects.create(chain=fallback, position=0, provider=provider, model="bad")
    ChainStep.objects.create(chain=fallback, position=1, provider=provider, model="good")


async def direct(base_url: str, models: list[str]) -> float:
    client = shared_client()
    start = time.perf_counter()
    for model in models:
        response = await client.post(
            f"{base_url}/v1/chat/completions", json={"model": model, "messages": MESSAGES}
        )
        await response.aread()
    return time.perf_counter() - start


async def via_service(chain: str) -> float:
    start = time.perf_counter()
    await complete(chain=chain, messages=MESSAGES)
    return time.perf_counter() - start


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1000


async def scenario(base_url: str, chain: str, models: list[str], n: int, concurrency: int) -> dict:
    gate = asyncio.Semaphore(concurrency)
    direct_s: list[float] = []
    service_s: list[float] = []

    async def one(i: int) -> None:
        async with gate:
            if i % 2:
                direct_s.append(await direct(base_url, models))
            else:
                service_s.append(await via_service(chain))

    for i in range(50):  # warm up: connections, chain plan cache, price lookups
        await one(i)
    direct_s.clear()
    service_s.clear()
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(2 * n)))
    wall = time.perf_counter() - start
    return {
        "direct_p50": pct(direct_s, 50),
        "direct_p99": pct(direct_s, 99),
        "service_p50": pct(service_s, 50),
        "service_p99": pct(service_s, 99),
        "added_p50": pct(service_s, 50) - pct(direct_s, 50),
        "added_p99": pct(service_s, 99) - pct(direct_s, 99),
        "mean_added": (statistics.mean(service_s) - statistics.mean(direct_s)) * 1000,
        "req_s": 2 * n / wall,
    }


async def main(args: argparse.Namespace, base_url: str) -> None:
    print(
        f"{'scenario':<10} {'conc':>4} {'direct p50':>10} {'p99':>7} {'service p50':>11} {'p99':>7}"
        f" {'added p50':>9} {'added p99':>9} {'req/s':>7}"
    )
    for chain, models in (("one", ["good"]), ("fallback", ["bad", "good"])):
        for concurrency in args.concurrency:
            r = await scenario(base_url, chain, models, args.requests, concurrency)
            print(
                f"{chain:<10} {concurrency:>4} {r['direct_p50']:>9.2f}ms {r['direct_p99']:>6.2f}"
                f" {r['service_p50']:>10.2f}ms {r['service_p99']:>6.2f} {r['added_p50']:>8.2f}ms"
                f" {r['added_p99']:>8.2f}ms {r['req_s']:>7.0f}"
            )
    await shared_client().aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=2000, help="service calls per scenario (as many direct)"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--breaker", action="store_true", help="leave the circuit breaker on (default 5)")
    args = parser.parse_args()
    upstream, base_url = start_upstream()
    try:
        make_chains(base_url)
        asyncio.run(main(args, base_url))
        ledger_flush(30)
        print(f"ledger: {Attempt.objects.count()} attempt rows written (write-behind, SQLite)")
    finally:
        upstream.terminate()
        upstream.wait()
