"""Do slow clients hold RANA's workers? A normal request's latency with and without 1,000 of them.

    .venv/bin/python bench/slow_clients.py [--slow 1000] [--seconds 15] [--mode mixed] [--workers 2]

Starts the fake upstream and RANA (scripts/serve: granian, fresh SQLite, buffered ledger) in
their own processes, as bench/gateway_overhead.py does. Then, from this process, one client
posts completions back to back over a keep-alive connection (chain `main`, one attempt) for
--seconds: first alone, then while another process keeps --slow clients connected, each
sending one byte per second (--rate) and reconnecting whenever the server cuts it off:

- head: a request head that never ends (granian drops it after RANA_HEADER_TIMEOUT_S);
- body: a complete head, then a body that never ends (RANA answers 408 and closes the
  connection after RANA_API_BODY_TIMEOUT_S);
- mixed (the default): half of each.

It prints the normal requests' p50 / p99 / p99.9 / max in both phases, how many slow clients
were connected, and how they were cut off. The bar (the issue "Survive faults"): with 1,000
one-byte-per-second clients, a normal request's p99 stays under 50 ms. Options: --env
NAME=VALUE (extra gateway environment, e.g. RANA_API_BODY_TIMEOUT_S=5), --json FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gateway_overhead import start_upstream, tree_cpu_s  # noqa: E402
from tests.gateway.live import start_gateway  # noqa: E402

BODY = json.dumps({"model": "main", "messages": [{"role": "user", "content": "Say hello."}]}).encode()


def pct(data: list[float], q: float) -> float:
    data = sorted(data)
    return data[min(len(data) - 1, int(q * len(data)))] if data else float("nan")


# --- the slow clients (a child process, so their writes do not delay the measuring client) ---
async def slow_client(
    host: str, port: int, key: str, body: bool, rate: float, until: float, tally: dict[str, int]
) -> None:
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            tally["connect_errors"] += 1
            await asyncio.sleep(1)
            continue
        tally["connected"] += 1
        tally["peak"] = max(tally["peak"], tally["connected"])
        if body:
            writer.write((head + "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n").encode())
            pending = iter(b'{"messages": ' + b" " * 99_980)
        else:
            writer.write(head[:16].encode())
            pending = iter(head[16:].encode() + b"X-Pad: " + b"x" * 100_000)
        reading = asyncio.ensure_future(reader.read(65536))
        try:
            while time.monotonic() < until:
                done, _ = await asyncio.wait([reading], timeout=1 / rate)
                if done:
                    break
                writer.write(bytes([next(pending)]))
                await writer.drain()
        except (ConnectionError, StopIteration):
            pass
        if reading.done() and not reading.cancelled() and reading.exception() is None:
            answer = reading.result()
            tally["answered_408" if answer.startswith(b"HTTP/1.1 408") else "dropped"] += 1
        else:
            reading.cancel()
            tally["dropped" if time.monotonic() < until else "open_at_end"] += 1
        tally["connected"] -= 1
        writer.close()


async def slow_child(
    host: str, port: int, key: str, count: int, mode: str, rate: float, seconds: float
) -> None:
    tally = dict.fromkeys(
        ("connected", "peak", "answered_408", "dropped", "open_at_end", "connect_errors"), 0
    )
    until = time.monotonic() + seconds
    kinds = {"head": [False], "body": [True], "mixed": [True, False]}[mode]
    tasks = [
        asyncio.ensure_future(slow_client(host, port, key, kinds[i % len(kinds)], rate, until, tally))
        for i in range(count)
    ]
    while tally["peak"] < count and time.monotonic() < until:
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    await asyncio.gather(*tasks)
    print(json.dumps(tally), flush=True)


# --- the measuring client ------------------------------------------------------------------------
async def normal_requests(url: str, key: str, seconds: float) -> tuple[list[float], int]:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    latencies, errors = [], 0
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        for _ in range(50):  # warm-up: the connection, the workers' caches
            async with session.post(url, data=BODY, headers=headers) as response:
                await response.read()
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            start = time.perf_counter()
            try:
                async with session.post(url, data=BODY, headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append((time.perf_counter() - start) * 1000)
            else:
                errors += 1
    return latencies, errors


def summary(name: str, latencies: list[float], errors: int) -> dict:
    figures = {
        "requests": len(latencies),
        "errors": errors,
        **{f"p{q}": round(pct(latencies, q / 100), 2) for q in (50, 99, 99.9)},
        "max": round(max(latencies, default=float("nan")), 2),
    }
    print(
        f"{name:<28} {figures['requests']:>8} {errors:>8} {figures['p50']:>8.2f} {figures['p99']:>8.2f} "
        f"{figures['p99.9']:>8.2f} {figures['max']:>8.2f}"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slow", type=int, default=1000, help="slow clients kept connected")
    parser.add_argument("--seconds", type=float, default=15.0, help="each phase's length")
    parser.add_argument("--mode", choices=("mixed", "head", "body"), default="mixed")
    parser.add_argument("--rate", type=float, default=1.0, help="bytes per second each slow client sends")
    parser.add_argument("--workers", type=int, default=2, help="granian worker processes")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra gateway env")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--child", nargs=4, metavar=("HOST", "PORT", "KEY", "SECONDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.slow + 1024)), hard))
    if args.child:
        host, port, key, seconds = args.child
        asyncio.run(slow_child(host, int(port), key, args.slow, args.mode, args.rate, float(seconds)))
        return

    upstream_proc, upstream = start_upstream()
    workdir = Path(tempfile.mkdtemp(prefix="rana-slow-bench-"))
    env = {"RANA_BREAKER_ENABLED": "0", **dict(item.split("=", 1) for item in args.env)}
    gateway = start_gateway(upstream_url=upstream, workdir=workdir, workers=args.workers, extra_env=env)
    url = f"{gateway.base_url}/chat/completions"
    key = gateway.keys["full"]
    host, port = gateway.base_url.removeprefix("http://").removesuffix("/v1").split(":")
    load_before = os.getloadavg()[0]
    try:
        columns = ("requests", "errors", "p50 ms", "p99 ms", "p99.9 ms", "max ms")
        print(f"{'phase':<28} " + " ".join(f"{c:>8}" for c in columns))
        cpu0 = tree_cpu_s(gateway.process.pid)
        alone = summary("alone", *asyncio.run(normal_requests(url, key, args.seconds)))
        cpu1 = tree_cpu_s(gateway.process.pid)
        child = subprocess.Popen(
            [
                sys.executable, __file__, "--child", host, port, key, str(args.seconds + 2),
                "--slow", str(args.slow), "--mode", args.mode, "--rate", str(args.rate),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert child.stdout is not None
        ready = child.stdout.readline().strip()
        if ready != "ready":
            raise SystemExit(f"the slow clients did not connect: {ready!r}")
        time.sleep(1)
        cpu2 = tree_cpu_s(gateway.process.pid)
        beside = summary(
            f"beside {args.slow} slow ({args.mode})", *asyncio.run(normal_requests(url, key, args.seconds))
        )
        cpu3 = tree_cpu_s(gateway.process.pid)
        tally = json.loads(child.stdout.readline())
        child.wait()
        print(
            f"slow clients: {tally['peak']} connected at once; cut off by the server: "
            f"{tally['answered_408']} with a 408, {tally['dropped']} dropped; {tally['open_at_end']} "
            f"still open at the end; connect errors: {tally['connect_errors']}"
        )
        print(
            f"gateway CPU: {cpu1 - cpu0:.1f} s alone, {cpu3 - cpu2:.1f} s beside the slow clients "
            f"({args.seconds:g} s each); load average before/after: {load_before:.2f}/"
            f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; workers: {args.workers}"
            + (f"; extra env: {' '.join(args.env)}" if args.env else "")
        )
        verdict = "under" if beside["p99"] < 50 else "OVER"
        print(f"p99 beside the slow clients: {beside['p99']:.2f} ms ({verdict} the 50 ms bar)")
        if args.json:
            figures = {
                "slow": args.slow,
                "mode": args.mode,
                "rate": args.rate,
                "alone": alone,
                "beside": beside,
                "slow_clients": tally,
            }
            args.json.write_text(json.dumps(figures, indent=2))
    finally:
        gateway.stop()
        upstream_proc.terminate()
        upstream_proc.wait()


if __name__ == "__main__":
    main()
