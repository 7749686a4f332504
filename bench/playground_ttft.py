"""What the playground adds to time to first token, over the engine's own figure.

    .venv/bin/python bench/playground_ttft.py [--runs 200]

Starts the fake OpenAI-compatible upstream (tests/fakes) in this process and RANA under
granian (ASGI, one worker, as scripts/run serves it) on a fresh migrated SQLite database with
the write-behind ledger (the production default), with a chain `bench` of one
openai_compatible step pointing at the fake. A logged-in client then sends runs one after
another, as the browser does: POST /playground/send (htmx), then GET the run's SSE stream.

For each run:
- sse ttft: from sending the GET of the stream to reading the first `token` event;
- submit ttft: from sending the POST to reading the first `token` event (both requests);
- engine ttft: the answering attempt's ttft_ms in the ledger (adapter call to first chunk).
"added" is sse (or submit) ttft minus engine ttft; p50 and p95 are printed.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes import FakeUpstream  # noqa: E402
from tests.playground.asgi_server import AsgiServer, form_data, login  # noqa: E402

SEED = """
fake = Provider.objects.create(name="fake-openai", kind="openai_compatible", base_url={base_url!r})
fake.set_api_key("sk-bench-0123456789abcdef")
fake.save()
bench = FallbackChain.objects.create(name="Bench", slug="bench", default_retries=0)
ChainStep.objects.create(chain=bench, position=0, provider=fake, model="fake-model")
"""


def one_run(client: httpx.Client, server: AsgiServer) -> tuple[str, float, float]:
    headers = {"HX-Request": "true", "X-CSRFToken": client.cookies["csrftoken"]}
    data = form_data(chain="bench", message="Say hello")
    t_submit = time.perf_counter()
    response = client.post(server.url("/playground/send"), data=data, headers=headers)
    run_id = re.search(r'id="turn-([0-9a-f-]{36})"', response.text).group(1)
    t_open = time.perf_counter()
    first = None
    with client.stream("GET", server.url(f"/playground/runs/{run_id}/stream")) as stream:
        for line in stream.iter_lines():
            if first is None and line == "event: token":
                first = time.perf_counter()
    assert first is not None, f"run {run_id} streamed no token"
    return run_id, (first - t_open) * 1000, (first - t_submit) * 1000


def engine_ttft(server: AsgiServer, run_id: str) -> float:
    sql = (
        "SELECT a.ttft_ms FROM providers_attempt a JOIN playground_playgroundrun r "
        "ON r.completion_id = a.completion_id WHERE r.id = ? AND a.outcome = 'success'"
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        rows = server.query(sql, (run_id.replace("-", ""),))
        if rows:
            return rows[0][0]
        time.sleep(0.02)
    raise RuntimeError(f"no ledger row for run {run_id}")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    with FakeUpstream() as fake:
        seed = SEED.format(base_url=fake.base_url_for("openai_compatible"))
        env = {"RANA_LEDGER_MODE": "buffered"}
        with AsgiServer(extra_env=env, extra_seed=seed) as server, httpx.Client(timeout=10) as client:
            login(client, server)
            for _ in range(args.warmup):
                one_run(client, server)
            samples = [one_run(client, server) for _ in range(args.runs)]
            engine = [engine_ttft(server, run_id) for run_id, _, _ in samples]
    sse_added = [sse - e for (_, sse, _), e in zip(samples, engine, strict=True)]
    submit_added = [sub - e for (_, _, sub), e in zip(samples, engine, strict=True)]
    print(f"runs: {args.runs} (after {args.warmup} warm-up), granian 1 worker, buffered ledger")
    print(f"engine ttft        p50 {statistics.median(engine):6.2f} ms  p95 {pct(engine, 95):6.2f} ms")
    for name, values in (("added, SSE GET", sse_added), ("added, POST+GET", submit_added)):
        print(f"{name:18} p50 {statistics.median(values):6.2f} ms  p95 {pct(values, 95):6.2f} ms")


if __name__ == "__main__":
    main()
