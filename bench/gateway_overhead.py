"""What RANA's OpenAI-compatible API adds over calling the upstream directly.

    .venv/bin/python bench/gateway_overhead.py [--requests 3000] [--workers 2] [--json out.json]

Starts, each in its own process on 127.0.0.1: the fake upstream (tests/fakes), and the
gateway on a fresh migrated SQLite database served by scripts/serve (granian, ASGI), as
scripts/run serves it, with the write-behind ledger on (every request writes a completion
and its attempts). This process is the load generator (aiohttp, its own connection pool).

Scenarios, each at 1 and 20 requests in flight:
- direct: POST the upstream's /v1/chat/completions (the baseline);
- gateway: the same body through POST /v1/chat/completions, chain `main` (one attempt);
- fallback: chain `fallback`, whose first step always answers 503, then the good step (no
  retries, and the circuit breaker off unless --breaker, so every request makes both calls).
At 1 in flight direct and gateway calls alternate, so both see the same machine state;
"added" is gateway p50/p99 minus direct p50/p99. Fallback should add about one upstream
round trip (the failed call) over a one-attempt request. "gw cpu ms/req" is the CPU time of
the gateway's processes (granian and its workers) per request: unlike latency and req/s it
hardly depends on what else the machine is doing.

Options: --production (DEBUG=0; the default is scripts/run's DEBUG=1), --workers N (2, as
scripts/serve), --breaker, --requests N, --json FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.gateway.live import LiveGateway, start_gateway  # noqa: E402

MESSAGES = [{"role": "user", "content": "Say hello in five words."}]


@dataclass
class Target:
    name: str
    url: str
    body: bytes
    headers: dict[str, str]


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants (granian and its workers)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


@dataclass
class Run:
    latencies_ms: list[float]
    seconds: float
    errors: int
    cpu_ms_per_request: float | None = None

    def pct(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))]

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0


def start_upstream() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes", "--models", "primary,backup", "--fail-model", "broken"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    return proc, line.split()[3]  # "fake upstream on http://127.0.0.1:PORT (...)"


def targets(upstream: str, gateway: LiveGateway) -> dict[str, Target]:
    auth = {"authorization": f"Bearer {gateway.keys['full']}", "content-type": "application/json"}
    plain = {"content-type": "application/json", "authorization": "Bearer sk-local"}

    def body(model: str) -> bytes:
        return json.dumps({"model": model, "messages": MESSAGES, "max_tokens": 32}).encode()

    return {
        "direct": Target("direct", f"{upstream}/v1/chat/completions", body("primary"), plain),
        "gateway": Target("gateway", f"{gateway.base_url}/chat/completions", body("main"), auth),
        "fallback": Target("fallback", f"{gateway.base_url}/chat/completions", body("fallback"), auth),
    }


async def one(session: aiohttp.ClientSession, target: Target) -> float | None:
    t0 = time.perf_counter()
    async with session.post(target.url, data=target.body, headers=target.headers) as response:
        await response.read()
        ok = response.status == 200
    return (time.perf_counter() - t0) * 1000 if ok else None


async def sequential(session: aiohttp.ClientSession, pair: list[Target], n: int) -> dict[str, Run]:
    """Alternate the targets, one request in flight."""
    found: dict[str, list[float]] = {t.name: [] for t in pair}
    errors = dict.fromkeys(found, 0)
    started = time.perf_counter()
    for _ in range(n):
        for target in pair:
            ms = await one(session, target)
            if ms is None:
                errors[target.name] += 1
            else:
                found[target.name].append(ms)
    seconds = time.perf_counter() - started
    return {name: Run(ms, seconds / len(pair), errors[name]) for name, ms in found.items()}


async def concurrent(session: aiohttp.ClientSession, target: Target, n: int, concurrency: int) -> Run:
    latencies: list[float] = []
    errors = 0
    left = n

    async def worker() -> None:
        nonlocal left, errors
        while left > 0:
            left -= 1
            ms = await one(session, target)
            if ms is None:
                errors += 1
            else:
                latencies.append(ms)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(latencies, time.perf_counter() - started, errors)


async def measure_cpu(pid: int, run) -> Run:
    """Run a load and note the gateway processes' CPU per request."""
    before = tree_cpu_s(pid)
    result = await run
    result.cpu_ms_per_request = 1000 * (tree_cpu_s(pid) - before) / max(1, len(result.latencies_ms))
    return result


async def measure(tgts: dict[str, Target], n: int, pid: int) -> dict[str, dict[str, Run]]:
    connector = aiohttp.TCPConnector(limit=64, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        for target in tgts.values():  # warm up: connections, chain plans, key cache
            await concurrent(session, target, 300, 20)
        results: dict[str, dict[str, Run]] = {"1": {}, "20": {}}
        results["1"].update(await sequential(session, [tgts["direct"], tgts["gateway"]], n))
        results["1"]["fallback"] = (await sequential(session, [tgts["fallback"]], n // 2))["fallback"]
        for name in ("direct", "gateway", "fallback"):
            results["20"][name] = await measure_cpu(pid, concurrent(session, tgts[name], n * 2, 20))
        return results


def report(results: dict[str, dict[str, Run]]) -> dict:
    table = {}
    print(
        f"{'in flight':>9} {'scenario':>9} {'p50 ms':>8} {'p99 ms':>8} {'added p50':>10} {'added p99':>10} "
        f"{'req/s':>8} {'gw cpu ms/req':>13} {'errors':>6}"
    )
    for level, runs in results.items():
        base = runs["direct"]
        for name, run in runs.items():
            cpu = run.cpu_ms_per_request
            row = {
                "p50_ms": round(run.pct(0.5), 3),
                "p99_ms": round(run.pct(0.99), 3),
                "added_p50_ms": round(run.pct(0.5) - base.pct(0.5), 3),
                "added_p99_ms": round(run.pct(0.99) - base.pct(0.99), 3),
                "rps": round(run.rps, 1),
                "errors": run.errors,
                "mean_ms": round(statistics.fmean(run.latencies_ms), 3) if run.latencies_ms else None,
                "gateway_cpu_ms_per_request": None if cpu is None else round(cpu, 3),
            }
            table[f"{level}/{name}"] = row
            print(
                f"{level:>9} {name:>9} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} {row['added_p50_ms']:10.2f} "
                f"{row['added_p99_ms']:10.2f} {row['rps']:8.0f} {'-' if cpu is None else f'{cpu:.3f}':>13} "
                f"{row['errors']:6d}"
            )
    one = results["1"]
    extra = one["fallback"].pct(0.5) - one["gateway"].pct(0.5)
    print(
        f"fallback adds {extra:.2f} ms p50 over a one-attempt request; one direct upstream round trip "
        f"is {one['direct'].pct(0.5):.2f} ms p50"
    )
    return table


def gateway_env(production: bool, breaker: bool = False) -> dict[str, str]:
    # The circuit breaker skips the always-failing step after a few requests (no call at all);
    # unless --breaker, switch it off so that every fallback request makes the failed call.
    env = {} if breaker else {"RANA_BREAKER_THRESHOLD": "1000000000"}
    if production:  # DEBUG=0 as in production (no TLS here, so no HTTPS redirect)
        env |= {
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "RANA_ENCRYPTION_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "SECURE_SSL_REDIRECT": "0",
        }
    return env


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="per scenario at 1 in flight")
    parser.add_argument("--workers", type=int, default=2, help="granian worker processes")
    parser.add_argument("--production", action="store_true", help="DEBUG=0 (default: as scripts/run)")
    parser.add_argument(
        "--breaker", action="store_true", help="keep the circuit breaker on (fallback then skips the step)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    upstream_proc, upstream = start_upstream()
    workdir = Path(tempfile.mkdtemp(prefix="rana-gateway-bench-"))
    env = gateway_env(args.production, args.breaker)
    gateway = start_gateway(upstream_url=upstream, workdir=workdir, workers=args.workers, extra_env=env)
    load_before = os.getloadavg()[0]
    try:
        results = asyncio.run(measure(targets(upstream, gateway), args.requests, gateway.process.pid))
        print(
            f"granian workers: {args.workers}; DEBUG={env.get('DEBUG', '1')}; ledger: buffered; "
            f"breaker: {'on' if args.breaker else 'off'}; "
            f"load average before/after: {load_before:.2f}/{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
        )
        table = report(results)
        rows = gateway.query("select count(*) from providers_completion")[0][0]
        print(f"ledger rows written: {rows} completions")
        if args.json:
            figures = {
                "workers": args.workers,
                "production": args.production,
                "breaker": args.breaker,
                "results": table,
            }
            args.json.write_text(json.dumps(figures, indent=2))
    finally:
        gateway.stop()
        upstream_proc.terminate()
        upstream_proc.wait()


if __name__ == "__main__":
    main()
