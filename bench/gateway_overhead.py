"""What RANA's OpenAI-compatible API adds over calling the upstream directly.

    .venv/bin/python bench/gateway_overhead.py [--requests 3000] [--workers 2] [--json out.json]

Starts, each in its own process on 127.0.0.1: the fake upstream (tests/fakes), and the
gateway on a fresh migrated SQLite database served by scripts/serve (granian, ASGI), as
scripts/run serves it, with the write-behind ledger on (every request writes a completion
and its attempts). This process is the load generator (aiohttp, closed loop, keep-alive
connections from its own pool).

Scenarios, each at 1 and 20 requests in flight (--requests each at 1, twice that at 20):
- direct: POST the upstream's /v1/chat/completions (the baseline);
- gateway: the same body through POST /v1/chat/completions, chain `main` (one attempt);
- fallback: chain `fallback`, whose first step always answers 503, then the good step (no
  retries, and the circuit breaker off unless --breaker, so every request makes both calls).
At 1 in flight direct and gateway calls alternate, so both see the same machine state;
"added" is the gateway's p50/p90/p99/p99.9 minus direct's. Fallback should add about one
upstream round trip (the failed call) over a one-attempt request. "cpu/req" is the CPU time
of the gateway's processes (granian and its workers) per request: unlike latency and req/s
it hardly depends on what else the machine is doing.

The event-loop lag probe (gateway.api.loop_lag, switched on with RANA_LOOP_LAG_DIR; off with
--no-loop-lag) reports, per phase, how late each worker's loop woke from a 1 ms sleep (a
histogram over all workers), and every wake 2 ms or more late ("stall"): whether a ledger
batch or a garbage collection overlapped it, and whether the loop's thread spent it running
its own callbacks, waiting for a CPU (machine load) or blocked (waiting for the GIL).

Options: --production (DEBUG=0; the default is scripts/run's DEBUG=1), --workers N (2, as
scripts/serve), --breaker, --requests N, --json FILE, --env NAME=VALUE (extra gateway
environment), --upstream-port N. --peer-url URL [--peer-model M] [--peer-header "k: v"]
[--peer-pid PID] measures another gateway (LiteLLM, Portkey) instead: bench/README.md.
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

    lag: dict | None = None  # the gateway workers' event-loop lag during this run

    def pct(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))]

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0


def start_upstream(
    port: int = 0, fake_args: tuple[str, ...] = ("--models", "primary,backup", "--fail-model", "broken")
) -> tuple[subprocess.Popen, str]:
    """The fake upstream in its own process (`python -m tests.fakes` with `fake_args`): it and
    its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes", "--port", str(port), *fake_args],
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


class LagFiles:
    """The loop-lag probe's files (gateway.api.loop_lag, one per worker, cumulative figures):
    what a phase of the bench added to them is the difference between two reads."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def read(self) -> dict[int, dict]:
        found: dict[int, dict] = {}
        for path in self.directory.glob("loop-lag-*.json") if self.directory else ():
            try:
                figures = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            found[figures["pid"]] = figures
        return found

    async def snapshot(self) -> tuple[float, dict[int, dict]]:
        if self.directory is None:
            return time.time(), {}
        await asyncio.sleep(0.3)  # past the probe's next write (every 0.25 s)
        return time.time(), self.read()

    @staticmethod
    def between(before: tuple[float, dict[int, dict]], after: tuple[float, dict[int, dict]]) -> dict | None:
        (t0, old), (t1, new) = before, after
        if not new:
            return None
        edges = next(iter(new.values()))["lag"]["edges_ms"]
        counts = [0] * (len(edges) + 1)
        gc_counts = {g: [0] * (len(edges) + 1) for g in "012"}
        gc_ms = dict.fromkeys("012", 0.0)
        stalls: list[dict] = []
        batches = 0
        for pid, figures in new.items():
            prior = old.get(pid)
            prior_counts = prior["lag"]["counts"] if prior else [0] * len(counts)
            now_counts = figures["lag"]["counts"]
            counts = [c + n - o for c, n, o in zip(counts, now_counts, prior_counts, strict=True)]
            for g in gc_counts:
                was = prior["gc_pauses"][g]["counts"] if prior else [0] * len(counts)
                now = figures["gc_pauses"][g]["counts"]
                gc_counts[g] = [c + n - o for c, n, o in zip(gc_counts[g], now, was, strict=True)]
                gc_ms[g] += figures["gc_pauses"][g]["total_ms"] - (
                    prior["gc_pauses"][g]["total_ms"] if prior else 0
                )
            batches += figures["ledger_batches"] - (prior["ledger_batches"] if prior else 0)
            stalls += [st for st in figures["stalls"] if t0 - 0.3 <= st["at"] <= t1]
        return {
            "edges_ms": edges,
            "counts": counts,
            "samples": sum(counts),
            "max_ms": max((st["lag_ms"] for st in stalls), default=None),
            "stall_ms": next(iter(new.values()))["stall_ms"],
            "stalls": len(stalls),
            "stalls_with_ledger_batch": sum(1 for st in stalls if st["ledger_batch"]),
            "stalls_with_gc": sum(1 for st in stalls if st["gc"]),
            "stalls_with_neither": sum(1 for st in stalls if not st["gc"] and not st["ledger_batch"]),
            # what most of each stall was: the loop running its own callbacks, waiting for a
            # CPU (machine load), or blocked (waiting for the GIL another thread holds)
            "stalls_mostly": {kind: sum(1 for st in stalls if _mostly(st) == kind) for kind in STALL_KINDS},
            "gc_pauses": gc_counts,
            "gc_pause_ms": {g: round(ms, 3) for g, ms in gc_ms.items()},
            "ledger_batches": batches,
        }


def writer_lag(lag: LagFiles) -> dict[str, str]:
    """The ledger writer's lag over the whole run (histogram bucket edges), all workers."""
    files = [f["ledger_lag"] for f in lag.read().values() if "ledger_lag" in f]
    if not files:
        return {}
    edges = files[0]["edges_ms"]
    counts = [sum(f["counts"][i] for f in files) for i in range(len(edges) + 1)]
    total = sum(counts)
    figures = {"rows": str(total)}
    for label, q in (("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)):
        seen = 0
        for edge, count in zip([*edges, None], counts, strict=True):
            seen += count
            if seen >= q * total:
                figures[label] = f"<={edge} ms" if edge is not None else f">{edges[-1]} ms"
                break
    figures["max"] = f"{max(f['max_ms'] for f in files):.1f} ms"
    return figures


STALL_KINDS = ("running", "runqueue", "blocked")


def _mostly(stall: dict) -> str:
    return max(STALL_KINDS, key=lambda kind: stall.get(f"{kind}_ms", 0.0))


def peer_targets(upstream: str, url: str, model: str, headers: list[str]) -> dict[str, Target]:
    """Another gateway (LiteLLM proxy, Portkey...) in RANA's place: its `gateway` scenario."""
    plain = {"content-type": "application/json", "authorization": "Bearer sk-local"}
    extra = dict(h.split(":", 1) for h in headers)
    peer = {"content-type": "application/json"} | {k.strip().lower(): v.strip() for k, v in extra.items()}
    direct = json.dumps({"model": "primary", "messages": MESSAGES, "max_tokens": 32}).encode()
    body = json.dumps({"model": model, "messages": MESSAGES, "max_tokens": 32}).encode()
    return {
        "direct": Target("direct", f"{upstream}/v1/chat/completions", direct, plain),
        "gateway": Target("gateway", f"{url.rstrip('/')}/chat/completions", body, peer),
    }


async def measure(
    tgts: dict[str, Target], n: int, pid: int | None, lag: LagFiles
) -> dict[str, dict[str, Run]]:
    connector = aiohttp.TCPConnector(limit=64, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        for target in tgts.values():  # warm up: connections, chain plans, key cache
            await concurrent(session, target, 300, 20)
        results: dict[str, dict[str, Run]] = {"1": {}, "20": {}}
        before = await lag.snapshot()
        results["1"].update(await sequential(session, [tgts["direct"], tgts["gateway"]], n))
        after = await lag.snapshot()
        results["1"]["direct"].lag = results["1"]["gateway"].lag = lag.between(before, after)
        if "fallback" in tgts:
            results["1"]["fallback"] = (await sequential(session, [tgts["fallback"]], n))["fallback"]
            before, after = after, await lag.snapshot()
            results["1"]["fallback"].lag = lag.between(before, after)
        for name in tgts:
            load = concurrent(session, tgts[name], n * 2, 20)
            results["20"][name] = await (load if pid is None else measure_cpu(pid, load))
            before, after = after, await lag.snapshot()
            results["20"][name].lag = lag.between(before, after)
        return results


PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999))


def lag_pct(lag: dict, q: float) -> str:
    """The upper edge of the bucket holding the q-quantile of the loop's lag."""
    rank, seen = q * lag["samples"], 0
    for edge, count in zip([*lag["edges_ms"], None], lag["counts"], strict=True):
        seen += count
        if seen >= rank:
            return f"<={edge:g}" if edge is not None else f">{lag['edges_ms'][-1]:g}"
    return "-"


def report_lag(results: dict[str, dict[str, Run]]) -> dict:
    shown = [0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]
    figures = {}
    lines = []
    for level, runs in results.items():
        for name, run in runs.items():
            lag = run.lag
            if lag is None or (level == "1" and name == "direct"):
                continue  # at 1 in flight direct and gateway share one phase
            label = f"{level}/{'direct+gateway' if level == '1' and name == 'gateway' else name}"
            figures[label] = lag
            edges, counts = lag["edges_ms"], lag["counts"]
            cells, below = [], 0
            for edge in shown:
                upto = sum(c for e, c in zip(edges, counts, strict=False) if e <= edge)
                cells.append(upto - below)
                below = upto
            cells.append(lag["samples"] - below)
            pauses = {g: sum(c for c in lag["gc_pauses"][g]) for g in "012"}
            lines.append(
                f"{label:>17} {lag['samples']:>7} "
                + " ".join(f"{c:>6}" for c in cells)
                + f" {lag_pct(lag, 0.99):>7} {lag_pct(lag, 0.999):>7} "
                f"{'-' if lag['max_ms'] is None else format(lag['max_ms'], '.1f'):>6} "
                f"{lag['stalls']:>6} {lag['stalls_with_ledger_batch']:>6} {lag['stalls_with_gc']:>5} "
                + "{running:>4}/{runqueue}/{blocked}".format(**lag["stalls_mostly"]).ljust(14)
                + f"{lag['ledger_batches']:>7} {pauses['0']}/{pauses['1']}/{pauses['2']}".ljust(22)
                + "/".join(f"{lag['gc_pause_ms'][g]:.0f}" for g in "012")
            )
    if not lines:
        return figures
    print(
        "\nevent-loop lag of the gateway workers (a 1 ms sleep, how late it woke, all workers; "
        f"'stalls' are wakes >= {next(iter(figures.values()))['stall_ms']:g} ms late, with how many "
        "overlapped a ledger batch or a garbage collection, and how many were mostly the loop "
        "running / waiting for a CPU / blocked on the GIL):"
    )
    head = " ".join(f"{'<=' + format(e, 'g'):>6}" for e in shown) + f" {'>' + format(shown[-1], 'g'):>6}"
    print(
        f"{'phase':>17} {'samples':>7} {head} {'p99':>7} {'p99.9':>7} {'max':>6} {'stalls':>6} "
        f"{'ledger':>6} {'gc':>5} {'run/runq/blocked':<14}{'batches':>7} {'gc runs g0/g1/g2':<14} "
        "gc ms g0/g1/g2"
    )
    for line in lines:
        print(line)
    return figures


def report(results: dict[str, dict[str, Run]]) -> dict:
    table = {}
    head = " ".join(f"{name:>7}" for name, _ in PERCENTILES)
    added = " ".join(f"{'+' + name:>7}" for name, _ in PERCENTILES)
    print(f"{'in flight':>9} {'scenario':>9} {head} {added} {'req/s':>7} {'cpu/req':>7} {'errors':>6}")
    print(f"{'':>9} {'':>9} {'(ms: latency, then added over direct)':<63}{'':>7} {'ms':>7}")
    for level, runs in results.items():
        base = runs["direct"]
        for name, run in runs.items():
            cpu = run.cpu_ms_per_request
            row: dict = {}
            for label, q in PERCENTILES:
                row[f"{label}_ms"] = round(run.pct(q), 3)
            for label, q in PERCENTILES:
                row[f"added_{label}_ms"] = round(run.pct(q) - base.pct(q), 3)
            row |= {
                "requests": len(run.latencies_ms),
                "rps": round(run.rps, 1),
                "errors": run.errors,
                "mean_ms": round(statistics.fmean(run.latencies_ms), 3) if run.latencies_ms else None,
                "gateway_cpu_ms_per_request": None if cpu is None else round(cpu, 3),
            }
            table[f"{level}/{name}"] = row
            print(
                f"{level:>9} {name:>9} "
                + " ".join(f"{row[f'{label}_ms']:7.2f}" for label, _ in PERCENTILES)
                + " "
                + " ".join(f"{row[f'added_{label}_ms']:7.2f}" for label, _ in PERCENTILES)
                + f" {row['rps']:7.0f} {'-' if cpu is None else f'{cpu:.3f}':>7} {row['errors']:6d}"
            )
    one = results["1"]
    if "fallback" not in one:
        return table
    extra = one["fallback"].pct(0.5) - one["gateway"].pct(0.5)
    print(
        f"fallback adds {extra:.2f} ms p50 over a one-attempt request; one direct upstream round trip "
        f"is {one['direct'].pct(0.5):.2f} ms p50"
    )
    return table


def gateway_env(production: bool, breaker: bool = False) -> dict[str, str]:
    # The circuit breaker skips the always-failing step after a few requests (no call at all);
    # unless --breaker, switch it off so that every fallback request makes the failed call.
    env = {} if breaker else {"RANA_BREAKER_ENABLED": "0"}
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
    parser.add_argument("--requests", type=int, default=3000, help="per scenario at 1 in flight (x2 at 20)")
    parser.add_argument("--workers", type=int, default=2, help="granian worker processes")
    parser.add_argument("--production", action="store_true", help="DEBUG=0 (default: as scripts/run)")
    parser.add_argument(
        "--breaker", action="store_true", help="keep the circuit breaker on (fallback then skips the step)"
    )
    parser.add_argument(
        "--no-loop-lag", dest="loop_lag", action="store_false", help="do not run the event-loop lag probe"
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="extra gateway environment (repeat)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--upstream-port", type=int, default=0, help="the fake upstream's port (0: any free)")
    parser.add_argument(
        "--peer-url", help="measure this OpenAI-compatible base URL (another gateway) instead of RANA"
    )
    parser.add_argument("--peer-model", default="primary", help="the model to ask the peer for")
    parser.add_argument(
        "--peer-header", action="append", default=[], metavar="NAME: VALUE", help="a header for the peer"
    )
    parser.add_argument("--peer-pid", type=int, help="the peer's server process, for its CPU per request")
    args = parser.parse_args()
    if args.peer_url:
        measure_peer(args)
        return
    upstream_proc, upstream = start_upstream(args.upstream_port)
    workdir = Path(tempfile.mkdtemp(prefix="rana-gateway-bench-"))
    env = gateway_env(args.production, args.breaker)
    lag_dir = workdir / "loop-lag" if args.loop_lag else None
    if lag_dir:
        env["RANA_LOOP_LAG_DIR"] = str(lag_dir)
    env |= dict(item.split("=", 1) for item in args.env)
    gateway = start_gateway(upstream_url=upstream, workdir=workdir, workers=args.workers, extra_env=env)
    load_before = os.getloadavg()[0]
    try:
        results = asyncio.run(
            measure(targets(upstream, gateway), args.requests, gateway.process.pid, LagFiles(lag_dir))
        )
        load_after = os.getloadavg()[0]
        print(
            f"granian workers: {args.workers}; DEBUG={env.get('DEBUG', '1')}; ledger: buffered; "
            f"breaker: {'on' if args.breaker else 'off'}; loop-lag probe: {'on' if lag_dir else 'off'}; "
            f"load average before/after: {load_before:.2f}/{load_after:.2f} on {os.cpu_count()} CPUs"
            + (f"; extra env: {' '.join(args.env)}" if args.env else "")
        )
        table = report(results)
        lag = report_lag(results)
        rows = gateway.query("select count(*) from providers_completion")[0][0]
        print(f"ledger rows written: {rows} completions")
        writer = writer_lag(LagFiles(lag_dir))
        if writer:
            print(
                "ledger writer lag (submit to commit, every row of the run, all workers): "
                + ", ".join(f"{k} {v}" for k, v in writer.items())
            )
        if args.json:
            figures = {
                "workers": args.workers,
                "production": args.production,
                "breaker": args.breaker,
                "extra_env": args.env,
                "load_average": [load_before, load_after],
                "results": table,
                "loop_lag": lag,
            }
            args.json.write_text(json.dumps(figures, indent=2))
    finally:
        gateway.stop()
        upstream_proc.terminate()
        upstream_proc.wait()


def measure_peer(args: argparse.Namespace) -> None:
    """The same load against another gateway pointed at the fake upstream (see bench/README.md)."""
    upstream_proc, upstream = start_upstream(args.upstream_port)
    print(f"fake upstream on {upstream}; peer: {args.peer_url} (model {args.peer_model})", flush=True)
    try:
        if args.upstream_port:  # the peer was configured for this port: give it a moment
            time.sleep(0.5)
        tgts = peer_targets(upstream, args.peer_url, args.peer_model, args.peer_header)
        load_before = os.getloadavg()[0]
        results = asyncio.run(measure(tgts, args.requests, args.peer_pid, LagFiles(None)))
        print(
            f"peer: {args.peer_url}; load average before/after: {load_before:.2f}/"
            f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
        )
        table = report(results)
        if args.json:
            args.json.write_text(json.dumps({"peer": args.peer_url, "results": table}, indent=2))
    finally:
        upstream_proc.terminate()
        upstream_proc.wait()


if __name__ == "__main__":
    main()
