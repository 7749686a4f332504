"""A bounded load test: two ASGI workers and a Celery worker with beat, one flaky provider.

    .venv/bin/python bench/celery_load.py [--seconds 30] [--clients 20] [--batch 300]
        [--flaky-pct 30] [--breaker] [--redis URL] [--postgres URL] [--json out.json]

Starts, each in its own process on 127.0.0.1: the fake upstream (tests/fakes, run by this
script: model `flaky` answers 503 to --flaky-pct % of the calls at random, every other model
answers at once, and it counts every call by model and by who sent it), the gateway on a fresh
migrated SQLite database (or a fresh database on the --postgres server) served by
scripts/serve (granian, --workers workers, buffered ledger), and a real Celery worker with
beat embedded (`celery -A rana_site worker --beat`, as scripts/run starts it) on the same
database and broker: folders in the run's tmp dir, or a queue of its own on --redis (then
REDIS_URL too: the cache and the circuit breaker shared by every process).

The bench adds a provider `flaky` (health probes on, every 10 s, model `flaky`), chain `load`
(`flaky`, then `backup` on the seeded provider; no retries; the chain's circuit breaker off
unless --breaker, so every request tries the flaky step) and an error-rate alert rule on
`flaky`. While --clients keep-alive clients load POST /v1/chat/completions (chain `load`,
closed loop) for --seconds, the background work runs beside it: beat's health probes (every
10 s) and alert evaluation (every 30 s), one rollup reconcile and one alert evaluation sent at
a third of the run, and a batch of --batch prompts through chain `load` posted to
POST /v1/batches two seconds in (the gateway enqueues it, the worker runs it).

Then the gateway is stopped gracefully (each worker writes its ledger on the way out), the
batch waited for, the Celery worker stopped, and the ledger counted against the fake's own
counts. Checks, each PASS / FAIL: no failed (non-200) request while a step is healthy; at
least 3,000 requests behind the latency figures (their p99.9 is then the 3rd-worst or worse);
a Completion with source api for every 200; an Attempt row for every call the fake received,
per model, from the API, the batch and the probes (skips by an open circuit make no call and
are counted apart); every batch row done; probe completions recorded; each background task
ran in the worker without an error. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gateway_overhead import PERCENTILES, Run, Target, tree_cpu_s  # noqa: E402
from tests.celery_worker import (  # noqa: E402
    Broker,
    Database,
    Worker,
    filesystem_broker,
    redis_broker,
    wait_for,
)
from tests.gateway.live import LiveGateway, start_gateway  # noqa: E402

MIN_REQUESTS = 3000  # per latency figure: p99.9 is then at least the 3rd-worst
TAGS = {"load:": "api", "batch:": "batch"}  # how the fake tells who sent a call (else: probe)
LOAD_MESSAGES = [{"role": "user", "content": "load: say hello in five words."}]
NO_CALL = ("circuit_open", "capability_skipped")  # providers.engine.results.NO_CALL_OUTCOMES
TASKS = (
    "providers.tasks.probes_run",
    "alerts.tasks.alerts_evaluate",
    "dashboards.tasks.rollups_reconcile",
    "batches.tasks.batch_run_task",
)


# --- the fake upstream, in its own process ------------------------------------------------
def serve_fake(flaky_pct: float) -> None:
    """The fake upstream (`--serve-fake`): prints its URL, then answers each `hits` line on
    stdin with the calls it received so far, as JSON {"model/tag": count}; stops at EOF."""
    from tests.fakes.faults import Fault
    from tests.fakes.upstream import FakeUpstream

    hits: Counter[str] = Counter()
    lock = threading.Lock()
    draw = random.Random(13)
    failure, success = Fault.error("overloaded"), Fault.ok()  # OpenAI kinds: 503

    def answer(record) -> Fault:
        text = last_text(record.messages)
        tag = next((name for prefix, name in TAGS.items() if text.startswith(prefix)), "probe")
        with lock:
            hits[f"{record.model}/{tag}"] += 1
            fail = record.model == "flaky" and draw.random() * 100 < flaky_pct
        return failure if fail else success

    with FakeUpstream(models=["primary", "backup", "flaky"], record_limit=10) as fake:
        fake.set_default(answer)
        print(f"fake upstream on {fake.base_url}", flush=True)
        for line in sys.stdin:
            if line.strip() == "hits":
                with lock:
                    print(json.dumps(dict(hits), sort_keys=True), flush=True)


def last_text(messages: object) -> str:
    """The text of a request's last message (a string, or its text parts)."""
    last = messages[-1] if isinstance(messages, list) and messages else {}
    content = last.get("content") if isinstance(last, dict) else None
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


class Fake:
    def __init__(self, flaky_pct: float) -> None:
        command = [sys.executable, __file__, "--serve-fake", "--flaky-pct", str(flaky_pct)]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.url = self.process.stdout.readline().split()[3]  # "fake upstream on http://..."

    def hits(self) -> Counter[str]:
        self.process.stdin.write("hits\n")
        self.process.stdin.flush()
        return Counter(json.loads(self.process.stdout.readline()))

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- the processes -------------------------------------------------------------------------
SEED = """
import datetime as dt
from decimal import Decimal
from alerts.models import AlertRule
from providers.models import ChainStep, FallbackChain, ModelPrice, Provider
seeded = Provider.objects.get(name="fake")
flaky = Provider(name="flaky", kind="openai_compatible", base_url=seeded.base_url,
                 probe_enabled=True, probe_interval_s=10, probe_model="flaky")
flaky.set_api_key("sk-local-FLAKYKEY0123456789abcdef")
flaky.save()
ModelPrice.objects.create(provider_kind="openai_compatible", model="flaky", input_per_mtok=Decimal("1"),
                          output_per_mtok=Decimal("2"), effective_from=dt.date(2025, 1, 1))
chain = FallbackChain.objects.create(name="Load", slug="load", default_retries=0, breaker_enabled=BREAKER)
ChainStep.objects.create(chain=chain, position=0, provider=flaky, model="flaky")
ChainStep.objects.create(chain=chain, position=1, provider=seeded, model="backup")
AlertRule.objects.create(name="flaky errors", kind="error_rate", provider=flaky, threshold_pct=10,
                         window_s=60, min_requests=20)
"""


def seed_load(gateway: LiveGateway, breaker: bool) -> None:
    done = gateway.manage("shell", "--no-imports", "-c", SEED.replace("BREAKER", str(breaker)))
    if done.returncode:
        raise RuntimeError(done.stderr)
    time.sleep(1.2)  # every worker sees the new configuration within RANA_CONFIG_RECHECK_S


def start_worker(gateway: LiveGateway, workdir: Path) -> Worker:
    """`celery -A rana_site worker --beat` on the gateway's database and broker."""
    command = [
        sys.executable, "-m", "celery", "-A", "rana_site", "worker", "--beat",
        "--loglevel", "INFO", "--without-mingle", "--without-gossip",
        "--hostname", f"bench-{uuid.uuid4().hex[:6]}@%h", "--schedule", str(workdir / "beat-schedule"),
    ]  # fmt: skip
    log_path = workdir / "celery.log"
    env = {**gateway.env, "LOG_LEVEL": "INFO"}  # each task's "succeeded" line
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    worker = Worker(process, log_path)
    try:
        wait_for(lambda: " ready." in worker.log() or process.poll() is not None, 60, "the Celery worker")
        if process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited at start-up:\n{worker.log()}")
    except BaseException:
        worker.stop()
        raise
    return worker


@contextlib.contextmanager
def fresh_postgres(server: str | None):
    """A database of the run's own on the --postgres server (dropped after), or None."""
    if not server:
        yield None
        return
    import psycopg

    name = f"rana_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def process_env(workdir: Path, broker: Broker, redis: str | None, database: str | None) -> dict[str, str]:
    env = {
        **broker.env,
        "RANA_CELERY_QUEUE": broker.queue,
        "RANA_JOURNAL_DIR": str(workdir / "journal"),
        "CELERY_TASK_ALWAYS_EAGER": "0",
    }
    if redis:
        env["REDIS_URL"] = redis
    if database:
        env["DATABASE_URL"] = database
    return env


# --- the load ------------------------------------------------------------------------------
class Load:
    """Closed-loop clients through chain `load`; the batch and two tasks sent beside them."""

    def __init__(self, gateway: LiveGateway, broker: Broker, args: argparse.Namespace) -> None:
        self.gateway, self.broker, self.args = gateway, broker, args
        self.auth = {"authorization": f"Bearer {gateway.keys['full']}", "content-type": "application/json"}
        body = json.dumps({"model": "load", "messages": LOAD_MESSAGES, "max_tokens": 16}).encode()
        self.target = Target("load", f"{gateway.base_url}/chat/completions", body, self.auth)
        self.statuses: Counter[str] = Counter()  # every API request of the run, warm-up included
        self.batch_id: str | None = None

    async def request(self, session: aiohttp.ClientSession) -> float | None:
        started = time.perf_counter()
        try:
            async with session.post(self.target.url, data=self.target.body, headers=self.target.headers) as r:
                await r.read()
                status = str(r.status)
        except (TimeoutError, aiohttp.ClientError) as exc:
            status = type(exc).__name__
        self.statuses[status] += 1
        return (time.perf_counter() - started) * 1000 if status == "200" else None

    async def closed_loop(self, session: aiohttp.ClientSession, seconds: float) -> Run:
        latencies: list[float] = []
        errors = 0
        end = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < end:
                ms = await self.request(session)
                if ms is None:
                    errors += 1
                else:
                    latencies.append(ms)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(self.args.clients)))
        return Run(latencies, time.perf_counter() - started, errors)

    async def submit_batch(self, session: aiohttp.ClientSession) -> None:
        await asyncio.sleep(2)
        rows = [{"id": f"b{i}", "prompt": f"batch: prompt {i}"} for i in range(self.args.batch)]
        body = {"model": "load", "input": rows, "concurrency": self.args.batch_concurrency, "max_tokens": 16}
        async with session.post(f"{self.gateway.base_url}/batches", json=body, headers=self.auth) as r:
            answer = await r.json()
            if r.status != 200:
                raise RuntimeError(f"POST /v1/batches answered {r.status}: {answer}")
        self.batch_id = answer["id"]

    async def send_tasks(self) -> None:
        await asyncio.sleep(self.args.seconds / 3)
        for task in ("dashboards.tasks.rollups_reconcile", "alerts.tasks.alerts_evaluate"):
            await asyncio.to_thread(self.broker.send, task)

    async def run(self) -> tuple[Run, float]:
        """Warm up (counted in the ledger checks, not in the figures), then the measured run;
        the gateway's CPU per request over it."""
        connector = aiohttp.TCPConnector(limit=self.args.clients + 8)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await self.closed_loop(session, 1.0)
            cpu_before = tree_cpu_s(self.gateway.process.pid)
            side = asyncio.gather(self.submit_batch(session), self.send_tasks())
            run = await self.closed_loop(session, self.args.seconds)
            cpu = tree_cpu_s(self.gateway.process.pid) - cpu_before
            await side
        return run, 1000 * cpu / max(1, len(run.latencies_ms) + run.errors)

    def batch_status(self) -> dict:
        request = aiohttp.ClientTimeout(total=10)

        async def get() -> dict:
            async with aiohttp.ClientSession(timeout=request) as session:
                url = f"{self.gateway.base_url}/batches/{self.batch_id}"
                async with session.get(url, headers=self.auth) as r:
                    return await r.json()

        return asyncio.run(get())


def wait_batch(load: Load, timeout_s: float = 180) -> tuple[dict, float]:
    started = time.monotonic()
    status = wait_for(
        lambda: (s := load.batch_status())["status"] in ("done", "cancelled") and s,
        timeout_s,
        "the batch to finish",
    )
    return status, time.monotonic() - started


# --- after the run: the ledger against the fake's counts ------------------------------------
def ledger_counts(database: Database) -> dict:
    def grouped(sql: str) -> dict:
        return {tuple(row[:-1]) if len(row) > 2 else row[0]: row[-1] for row in database.query(sql)}

    return {
        "completions": grouped("select source, outcome, count(*) from providers_completion group by 1, 2"),
        "attempts": grouped("select source, model, outcome, count(*) from providers_attempt group by 1,2,3"),
        "batch_rows": grouped("select status, count(*) from batches_batchrow group by 1"),
        "alert_events": database.query("select count(*) from alerts_alertevent")[0][0],
    }


def calls_made(counts: dict, source: str) -> Counter[str]:
    """Attempt rows that made a call, per model (a skip by an open circuit made none)."""
    found: Counter[str] = Counter()
    for (src, model, outcome), n in counts["attempts"].items():
        if src == source and outcome not in NO_CALL:
            found[model] += n
    return found


def task_log(worker_log: str) -> tuple[Counter[str], list[str]]:
    succeeded = Counter(re.findall(r"Task ([\w.]+)\[[^\]]+\] succeeded", worker_log))
    marks = ("ERROR/", "CRITICAL/", "] raised", "Traceback")
    errors = [line for line in worker_log.splitlines() if any(mark in line for mark in marks)]
    return succeeded, errors


def checks(load: Load, run: Run, counts: dict, hits: Counter[str], worker_log: str) -> list[tuple]:
    """(name, passed, what was found) for each check."""
    ok_requests = load.statuses["200"]
    completions = counts["completions"]
    api = sum(n for (src, _), n in completions.items() if src == "api")
    api_success = completions.get(("api", "success"), 0)
    found = [
        ("failed requests = 0", sum(load.statuses.values()) == ok_requests,
         f"{sum(load.statuses.values()) - ok_requests} ({dict(load.statuses)})"),
        (f"requests behind the latency figures >= {MIN_REQUESTS:,}", len(run.latencies_ms) >= MIN_REQUESTS,
         f"{len(run.latencies_ms):,}"),
        ("api completions = 200s (all successes)", api == ok_requests == api_success,
         f"{api:,} rows ({api_success:,} success) for {ok_requests:,} answers"),
    ]  # fmt: skip
    for source, tag in (("api", "api"), ("batch", "batch"), ("probe", "probe")):
        rows = calls_made(counts, source)
        seen = Counter({k.split("/")[0]: n for k, n in hits.items() if k.endswith(f"/{tag}")})
        skipped = sum(n for (s, _, o), n in counts["attempts"].items() if s == source and o in NO_CALL)
        found.append((
            f"{source} attempts = calls the fake received, per model", rows == seen,
            f"rows {dict(rows)}, fake {dict(seen)}, circuit-open skips {skipped}",
        ))  # fmt: skip
    batch_done = counts["batch_rows"].get("done", 0)
    batch_completions = sum(n for (src, _), n in completions.items() if src == "batch")
    found.append((
        "batch rows done = batch size, one completion each",
        batch_done == batch_completions == load.args.batch,
        f"{batch_done} done of {load.args.batch} ({counts['batch_rows']}), {batch_completions} completions",
    ))  # fmt: skip
    probes = {o: n for (src, o), n in completions.items() if src == "probe"}
    found.append(("probe completions > 0", sum(probes.values()) > 0, f"{sum(probes.values())} {probes}"))
    succeeded, errors = task_log(worker_log)
    found.append((
        "each background task ran, no error in the worker's log",
        all(succeeded[t] for t in TASKS) and not errors,
        ", ".join(f"{t.rsplit('.', 1)[1]} x{succeeded[t]}" for t in TASKS)
        + f"; alert events fired: {counts['alert_events']}"
        + (f"; {len(errors)} error lines, first: {errors[0][:200]}" if errors else ""),
    ))  # fmt: skip
    return found


def report(args: argparse.Namespace, run: Run, cpu_ms: float, load_avg: tuple[float, float]) -> dict:
    figures = {label: round(run.pct(q), 2) for label, q in PERCENTILES}
    print(
        f"\nchain load (flaky {args.flaky_pct:g} % 503s, then backup); {args.clients} clients in flight, "
        f"{args.seconds:g} s; granian workers {args.workers}, Celery worker with beat; "
        f"database {'postgresql' if args.postgres else 'sqlite'}, "
        f"broker {'redis' if args.redis else 'folders'}; "
        f"chain breaker {'on' if args.breaker else 'off'}; load average before/after "
        f"{load_avg[0]:.2f}/{load_avg[1]:.2f} on {os.cpu_count()} CPUs"
    )
    cells = " / ".join(f"{figures[label]:.2f}" for label, _ in PERCENTILES)
    print(
        f"requests {len(run.latencies_ms) + run.errors:,} (failed {run.errors}), {run.rps:.0f} req/s, "
        f"latency ms p50 / p90 / p99 / p99.9: {cells}, gateway cpu/req {cpu_ms:.3f} ms"
    )
    enough = "enough" if len(run.latencies_ms) >= MIN_REQUESTS else "NOT enough"
    answered = len(run.latencies_ms)
    print(f"({answered:,} answered requests behind each percentile: {enough}; p99.9 needs {MIN_REQUESTS:,})")
    return {"requests": len(run.latencies_ms) + run.errors, "failed": run.errors, "rps": round(run.rps, 1),
            "latency_ms": figures, "gateway_cpu_ms_per_request": round(cpu_ms, 3)}  # fmt: skip


def measure(args: argparse.Namespace, workdir: Path, database_url: str | None) -> int:
    folder = workdir / "celery"
    broker = redis_broker(args.redis) if args.redis else filesystem_broker(folder)
    broker = dataclasses.replace(broker, queue=f"rana-bench-{uuid.uuid4().hex[:8]}")
    fake = Fake(args.flaky_pct)
    gateway = worker = None
    try:
        env = process_env(workdir, broker, args.redis, database_url)
        gateway = start_gateway(upstream_url=fake.url, workdir=workdir, workers=args.workers, extra_env=env)
        database = Database(gateway.env["DATABASE_URL"])
        seed_load(gateway, args.breaker)
        worker = start_worker(gateway, workdir)
        load, load_before = Load(gateway, broker, args), os.getloadavg()[0]
        run, cpu_ms = asyncio.run(load.run())
        load_avg = (load_before, os.getloadavg()[0])
        batch, waited = wait_batch(load)
        print(f"batch {batch['status']} {batch['counts']}, done {waited:.1f} s after the load", flush=True)
        gateway.stop()  # graceful: each worker writes its ledger on the way out
        worker.stop()
        hits = fake.hits()
        figures = report(args, run, cpu_ms, load_avg)
        found = checks(load, run, ledger_counts(database), hits, worker.log())
    finally:
        for stop in (gateway and gateway.stop, worker and worker.stop, fake.stop):
            if stop:
                stop()
    for name, passed, what in found:
        print(f"{'PASS' if passed else 'FAIL'}  {name}: {what}")
    failed = [name for name, passed, _ in found if not passed]
    print("all checks passed" if not failed else f"{len(failed)} check(s) failed", flush=True)
    if args.json:
        figures["checks"] = {name: {"passed": passed, "found": what} for name, passed, what in found}
        args.json.write_text(json.dumps(figures, indent=2))
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30, help="the measured run (after 1 s of warm-up)")
    parser.add_argument("--clients", type=int, default=20, help="requests in flight (closed loop)")
    parser.add_argument("--workers", type=int, default=2, help="granian worker processes")
    parser.add_argument("--batch", type=int, default=300, help="prompts in the batch posted during the run")
    parser.add_argument("--batch-concurrency", type=int, default=4, help="the batch's prompts in flight")
    parser.add_argument("--flaky-pct", type=float, default=30, help="%% of the flaky model's calls that fail")
    parser.add_argument("--breaker", action="store_true", help="chain load's circuit breaker on")
    parser.add_argument("--redis", help="a Redis URL: broker, cache and circuit breaker (default: folders)")
    parser.add_argument("--postgres", help="a PostgreSQL server URL (a fresh database)")
    parser.add_argument("--json", type=Path, help="also write the figures and checks here")
    parser.add_argument("--serve-fake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopped by its stdin closing
        serve_fake(args.flaky_pct)
        return
    workdir = Path(tempfile.mkdtemp(prefix="rana-celery-load-"))
    with fresh_postgres(args.postgres) as database_url:
        status = measure(args, workdir, database_url)
    print(f"logs: {workdir}/server.log, {workdir}/celery.log")
    sys.exit(status)


if __name__ == "__main__":
    main()
