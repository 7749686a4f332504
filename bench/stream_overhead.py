"""What RANA adds to a streamed answer: text deltas against tool-call deltas.

    .venv/bin/python bench/stream_overhead.py [--requests 3000] [--workers 2] [--json out.json]

Starts, each in its own process on 127.0.0.1, the fake upstream (tests/fakes, with the model
"tooler" always calling get_weather) and the gateway on a fresh SQLite database served by
scripts/serve (granian), as bench/gateway_overhead.py does. Four streamed scenarios, each at
1 and 20 requests in flight (closed loop, keep-alive; --requests each at 1, twice that at 20):

- text/direct and text/gateway: a 5-delta text answer (chain `main`);
- tools/direct and tools/gateway: one tool call, its id and name then the arguments in 4
  fragments (5 deltas too), with `tools` in the request (chain `tools`).

Latency is the whole stream, request to last byte. "added" is the gateway's figure minus the
direct one of the same kind; at 1 in flight direct and gateway calls alternate. The claim
checked: the tools row adds no more than the text row (its validation and translation work
is per request, not per delta).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gateway_overhead import (  # noqa: E402
    PERCENTILES,
    Run,
    Target,
    concurrent,
    gateway_env,
    measure_cpu,
    sequential,
    start_upstream,
)
from tests.gateway.live import start_gateway  # noqa: E402

MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]
FAKE_ARGS = ("--models", "primary,tooler", "--tool-model", "tooler")  # "tooler" always calls a tool
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def targets(upstream: str, base_url: str, key: str) -> dict[str, dict[str, Target]]:
    auth = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    plain = {"content-type": "application/json", "authorization": "Bearer sk-local"}

    def body(model: str, tools: bool) -> bytes:
        fields = {"model": model, "messages": MESSAGES, "stream": True, "max_tokens": 32}
        return json.dumps(fields | ({"tools": [TOOL]} if tools else {})).encode()

    direct, gateway = f"{upstream}/v1/chat/completions", f"{base_url}/chat/completions"
    return {
        "text": {
            "direct": Target("direct", direct, body("primary", False), plain),
            "gateway": Target("gateway", gateway, body("main", False), auth),
        },
        "tools": {
            "direct": Target("direct", direct, body("tooler", True), plain),
            "gateway": Target("gateway", gateway, body("tools", True), auth),
        },
    }


async def check(session: aiohttp.ClientSession, kinds: dict[str, dict[str, Target]]) -> None:
    """Each scenario streams what it should: text deltas, or tool-call deltas."""
    for kind, pair in kinds.items():
        for target in pair.values():
            async with session.post(target.url, data=target.body, headers=target.headers) as response:
                text = (await response.read()).decode()
            assert response.status == 200, text
            assert ('"tool_calls"' in text) == (kind == "tools"), f"{kind}/{target.name}: {text[:300]}"


async def measure(kinds: dict[str, dict[str, Target]], n: int, pid: int) -> dict[str, dict[str, Run]]:
    connector = aiohttp.TCPConnector(limit=64, force_close=False)
    results: dict[str, dict[str, Run]] = {}
    async with aiohttp.ClientSession(connector=connector) as session:
        await check(session, kinds)
        for pair in kinds.values():
            for target in pair.values():
                await concurrent(session, target, 300, 20)  # warm up
        for kind, pair in kinds.items():
            for name, run in (await sequential(session, [pair["direct"], pair["gateway"]], n)).items():
                results[f"1/{kind}/{name}"] = run
            for name, target in pair.items():
                results[f"20/{kind}/{name}"] = await measure_cpu(pid, concurrent(session, target, 2 * n, 20))
    return results


def report(results: dict[str, dict[str, Run]]) -> dict:
    table = {}
    head = " ".join(f"{name:>7}" for name, _ in PERCENTILES)
    added = " ".join(f"{'+' + name:>7}" for name, _ in PERCENTILES)
    print(f"{'scenario':>20} {head} {added} {'req/s':>7} {'cpu/req':>7} {'errors':>6}")
    for label, run in results.items():
        level, kind, _ = label.split("/")
        base = results[f"{level}/{kind}/direct"]
        row = {f"{p}_ms": round(run.pct(q), 3) for p, q in PERCENTILES}
        row |= {f"added_{p}_ms": round(run.pct(q) - base.pct(q), 3) for p, q in PERCENTILES}
        cpu = run.cpu_ms_per_request
        row |= {
            "requests": len(run.latencies_ms),
            "rps": round(run.rps, 1),
            "errors": run.errors,
            "gateway_cpu_ms_per_request": None if cpu is None else round(cpu, 3),
        }
        table[label] = row
        print(
            f"{label:>20} "
            + " ".join(f"{row[f'{p}_ms']:7.2f}" for p, _ in PERCENTILES)
            + " "
            + " ".join(f"{row[f'added_{p}_ms']:7.2f}" for p, _ in PERCENTILES)
            + f" {row['rps']:7.0f} {'-' if cpu is None else f'{cpu:.3f}':>7} {row['errors']:6d}"
        )
    for level in ("1", "20"):
        text, tools = table[f"{level}/text/gateway"], table[f"{level}/tools/gateway"]
        print(
            f"{level} in flight: tool-call streaming adds p50 {tools['added_p50_ms']:+.2f} ms, "
            f"p99 {tools['added_p99_ms']:+.2f} ms; text streaming adds p50 {text['added_p50_ms']:+.2f} ms, "
            f"p99 {text['added_p99_ms']:+.2f} ms"
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="per scenario at 1 in flight (x2 at 20)")
    parser.add_argument("--workers", type=int, default=2, help="granian worker processes")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    upstream_proc, upstream = start_upstream(
        fake_args=("--models", "primary,tooler", "--tool-model", "tooler")
    )
    workdir = Path(tempfile.mkdtemp(prefix="rana-stream-bench-"))
    gateway = start_gateway(
        upstream_url=upstream, workdir=workdir, workers=args.workers, extra_env=gateway_env(False)
    )
    load_before = os.getloadavg()[0]
    try:
        kinds = targets(upstream, gateway.base_url, gateway.keys["full"])
        results = asyncio.run(measure(kinds, args.requests, gateway.process.pid))
        print(
            f"granian workers: {args.workers}; ledger: buffered; load average before/after: "
            f"{load_before:.2f}/{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
        )
        table = report(results)
        if args.json:
            args.json.write_text(json.dumps({"workers": args.workers, "results": table}, indent=2))
    finally:
        gateway.stop()
        upstream_proc.terminate()
        upstream_proc.wait(timeout=10)


if __name__ == "__main__":
    main()
