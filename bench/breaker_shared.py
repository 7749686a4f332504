"""What sharing the circuit breaker through Redis buys and what a skip costs.

    .venv/bin/python bench/breaker_shared.py [--requests 3000] [--workers 2] [--threshold 5]
        [--clients 8] [--no-redis] [--json out.json]

Starts, each in its own process on 127.0.0.1: the fake upstream (its models `broken` and
`broken20` always answer 503), a redis-server of its own on a free port (not with --no-redis),
and the gateway on a fresh SQLite database served by scripts/serve (granian, --workers
workers, REDIS_URL shared), RANA_BREAKER_THRESHOLD=--threshold and a cooldown longer than the
run (no probe). This process is the load generator (aiohttp, closed loop, keep-alive).

1. Opening, with the first step hard down: --clients keep-alive connections (spread over the
   workers by the kernel: the bench prints how many each worker holds) send requests through
   chain `fallback` (`broken`, then `backup`) one at a time, in turn, 20 per client; then the
   same at 20 in flight through chain `fallback20` (`broken20`, then `backup`). The ledger
   says how many calls the down step took before every worker skipped it. Target, at 1 in
   flight: at most the threshold (each worker on its own, --no-redis: threshold x workers).
   At 20 in flight the requests already on their way when it opened add to it.
2. Cost of a skip, with `broken` open: a request through `fallback` (a circuit_open skip, then
   `backup` answers) against one sent straight to `backup` (chain `straight`, made by the
   bench), alternating at 1 in flight (--requests each), then each at 20 in flight (twice
   that): p50 / p99 / p99.9 and the difference. Target: at most 0.5 ms at p50.
3. The hot path, in this process: `is_open` on a closed circuit and `record` of a success,
   with the circuits in this process and in Redis (the mirror: no round trip).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gateway_overhead import (  # noqa: E402
    MESSAGES,
    PERCENTILES,
    Run,
    Target,
    concurrent,
    one,
    sequential,
    start_upstream,
)
from tests.gateway.live import LiveGateway, free_port, start_gateway  # noqa: E402
from tests.site.test_worker_death import children, connections  # noqa: E402

FAKE_ARGS = ("--models", "primary,backup", "--fail-model", "broken", "--fail-model", "broken20")
CHAINS = (  # made in the gateway's database: (slug, models)
    ("straight", ["backup"]),
    ("fallback20", ["broken20", "backup"]),
)
PER_CLIENT = 20


def start_redis() -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen([*command, "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode:
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def make_chains(gateway: LiveGateway) -> None:
    code = "from providers.models import ChainStep, FallbackChain, Provider; p = Provider.objects.get()\n"
    for slug, models in CHAINS:
        code += f"c = FallbackChain.objects.create(name={slug!r}, slug={slug!r}, default_retries=0)\n"
        for position, model in enumerate(models):
            code += f"ChainStep.objects.create(chain=c, position={position}, provider=p, model={model!r})\n"
    done = gateway.manage("shell", "--no-imports", "-c", code)
    if done.returncode:
        raise RuntimeError(done.stderr)
    time.sleep(1.2)  # every worker sees the new configuration within RANA_CONFIG_RECHECK_S


def target(gateway: LiveGateway, chain: str) -> Target:
    headers = {"authorization": f"Bearer {gateway.keys['full']}", "content-type": "application/json"}
    body = json.dumps({"model": chain, "messages": MESSAGES, "max_tokens": 32}).encode()
    return Target(chain, f"{gateway.base_url}/chat/completions", body, headers)


def down_step_calls(gateway: LiveGateway, model: str, answered: int, chain: str) -> int:
    """Calls the down step took, once the ledger holds every answered request (written behind)."""
    deadline = time.monotonic() + 15
    sql = "select count(*) from providers_completion where chain_slug = ?"
    while gateway.query(sql, (chain,))[0][0] < answered and time.monotonic() < deadline:
        time.sleep(0.05)
    sql = "select count(*) from providers_attempt where model = ? and outcome = 'server_error'"
    return gateway.query(sql, (model,))[0][0]


async def open_one_at_a_time(gateway: LiveGateway, clients: int) -> dict:
    """Requests through `fallback` in turn over `clients` connections, one in flight."""
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for _ in range(clients)]
    fallback, errors = target(gateway, "fallback"), 0
    try:
        for _ in range(PER_CLIENT):
            for session in sessions:
                errors += await one(session, fallback) is None
        port = int(gateway.base_url.rsplit(":", 1)[1].split("/")[0])
        held = {pid: connections(pid, port) for pid in children(gateway.process.pid)}
    finally:
        for session in sessions:
            await session.close()
    sent = clients * PER_CLIENT
    calls = down_step_calls(gateway, "broken", sent - errors, "fallback")
    return {"requests": sent, "errors": errors, "down_step_calls": calls, "connections_per_worker": held}


async def open_twenty_in_flight(gateway: LiveGateway, clients: int) -> dict:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        run = await concurrent(session, target(gateway, "fallback20"), clients * PER_CLIENT, 20)
    answered = len(run.latencies_ms)
    calls = down_step_calls(gateway, "broken20", answered, "fallback20")
    return {"requests": answered + run.errors, "errors": run.errors, "down_step_calls": calls}


async def skip_cost(gateway: LiveGateway, n: int) -> dict[str, dict[str, Run]]:
    tgts = {"fallback": target(gateway, "fallback"), "straight": target(gateway, "straight")}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        for t in tgts.values():  # warm up: connections, chain plans, key cache
            await concurrent(session, t, 300, 20)
        results = {"1": await sequential(session, list(tgts.values()), n), "20": {}}
        for name, t in tgts.items():
            results["20"][name] = await concurrent(session, t, n * 2, 20)
    return results


def report_cost(results: dict[str, dict[str, Run]]) -> dict:
    table = {}
    head = " ".join(f"{name:>7}" for name, _ in PERCENTILES)
    print(f"\n{'in flight':>9} {'scenario':>9} {head} {'req/s':>7} {'errors':>6}  (ms)")
    for level, runs in results.items():
        for name, run in runs.items():
            row = {f"{label}_ms": round(run.pct(q), 3) for label, q in PERCENTILES}
            row |= {"requests": len(run.latencies_ms), "rps": round(run.rps, 1), "errors": run.errors}
            table[f"{level}/{name}"] = row
            cells = " ".join(f"{row[f'{label}_ms']:7.2f}" for label, _ in PERCENTILES)
            print(f"{level:>9} {name:>9} {cells} {row['rps']:7.0f} {row['errors']:6d}")
        skip, straight = runs["fallback"], runs["straight"]
        added = {label: round(skip.pct(q) - straight.pct(q), 3) for label, q in PERCENTILES}
        table[f"{level}/skip_added_ms"] = added
        print(
            f"{level:>9} {'skip adds':>9} "
            + " ".join(f"{added[label]:7.2f}" for label, _ in PERCENTILES)
            + "  (fallback over straight; target <= 0.50 at p50)"
        )
    return table


def hot_path(redis_url: str | None, calls: int = 100_000) -> dict[str, float]:
    """Microseconds per call, in this process: is_open on a closed circuit, record of a success;
    the site's breaker as a request uses it (the store picked from the cache at each call)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rana_site.settings")
    os.environ.setdefault("RANA_ENV_FILE", "")
    if redis_url:
        os.environ["REDIS_URL"] = redis_url  # the cache, so the breaker's circuits, on Redis
    import django

    django.setup()
    from django.test import override_settings

    from providers.engine.plan import StepPlan
    from providers.engine.results import AttemptRecord
    from providers.engine.types import ProviderConfig
    from providers.services.breaker import CircuitBreaker
    from providers.services.breaker_policy import BreakerPolicy

    provider = ProviderConfig(id=1, name="p", kind="fake", base_url="")
    step = StepPlan(0, provider, "m", retries=0, timeout_s=1.0, backoff_base_s=0.0)
    success = AttemptRecord(0, 1, "p", "fake", "m", 0, "success", datetime.now(UTC), 1.0)
    memory = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    caches = {"local": override_settings(CACHES=memory)}
    if redis_url:
        caches["redis"] = override_settings()
    figures = {}
    for name, cache_settings in caches.items():
        cache_settings.enable()
        breaker = CircuitBreaker()
        gate = breaker.gate(BreakerPolicy())
        gate.is_open(step)  # starts the mirror (Redis)
        started = time.perf_counter()
        for _ in range(calls):
            gate.is_open(step)
        figures[f"{name}/is_open_closed_us"] = round((time.perf_counter() - started) / calls * 1e6, 3)
        started = time.perf_counter()
        for _ in range(calls // 10):
            gate.record(success)
        figures[f"{name}/record_success_us"] = round((time.perf_counter() - started) / (calls // 10) * 1e6, 3)
        breaker.flush()
        breaker.reset()
        cache_settings.disable()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="per scenario at 1 in flight (x2 at 20)")
    parser.add_argument("--workers", type=int, default=2, help="granian worker processes")
    parser.add_argument("--threshold", type=int, default=5, help="RANA_BREAKER_THRESHOLD")
    parser.add_argument("--clients", type=int, default=8, help="connections while the step goes down")
    parser.add_argument("--no-redis", dest="redis", action="store_false", help="each worker on its own")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    upstream_proc, upstream = start_upstream(fake_args=FAKE_ARGS)
    redis_proc, redis_url = start_redis() if args.redis else (None, "")
    env = {"RANA_BREAKER_THRESHOLD": str(args.threshold), "RANA_BREAKER_COOLDOWN_S": "3600"}
    if redis_url:
        env |= {"REDIS_URL": redis_url, "CELERY_BROKER_URL": "memory://"}
    workdir = Path(tempfile.mkdtemp(prefix="rana-breaker-bench-"))
    gateway = start_gateway(upstream_url=upstream, workdir=workdir, workers=args.workers, extra_env=env)
    load_before = os.getloadavg()[0]
    try:
        make_chains(gateway)
        opening = asyncio.run(open_one_at_a_time(gateway, args.clients))
        opening20 = asyncio.run(open_twenty_in_flight(gateway, args.clients))
        results = asyncio.run(skip_cost(gateway, args.requests))
        print(
            f"granian workers: {args.workers}; breaker state: {'Redis' if redis_url else 'per process'}; "
            f"threshold {args.threshold}; load average before/after: {load_before:.2f}/"
            f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
        )
        held = opening["connections_per_worker"]
        print(
            f"opening at 1 in flight ({opening['requests']} requests over {args.clients} connections, "
            f"held per worker {sorted(held.values(), reverse=True)}): the down step took "
            f"{opening['down_step_calls']} calls (target <= {args.threshold}; per process: "
            f"{args.threshold * args.workers})"
        )
        print(
            f"opening at 20 in flight ({opening20['requests']} requests): the down step took "
            f"{opening20['down_step_calls']} calls"
        )
        table = report_cost(results)
        micro = hot_path(redis_url)
        print("hot path in this process (us per call): " + ", ".join(f"{k} {v}" for k, v in micro.items()))
        if args.json:
            figures = {
                "workers": args.workers,
                "redis": bool(redis_url),
                "threshold": args.threshold,
                "opening": {**opening, "connections_per_worker": list(held.values())},
                "opening_20_in_flight": opening20,
                "results": table,
                "hot_path_us": micro,
            }
            args.json.write_text(json.dumps(figures, indent=2))
    finally:
        gateway.stop()
        upstream_proc.terminate()
        upstream_proc.wait()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait()


if __name__ == "__main__":
    main()
