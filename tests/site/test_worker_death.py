"""Serving that heals: the real scripts/serve (granian, 2 workers) in front of a fake upstream.

A worker killed mid-load (SIGKILL, as the kernel's OOM killer does it; or SIGTERM sent to
the worker alone) costs only the requests it held: the master stays up, replaces the worker,
and the other worker answers meanwhile. SIGTERM to the master drains in-flight requests and
lets each worker's lifespan shutdown write the ledger before it exits. SIGKILL to the master
leaves no orphan workers holding the port: a new master (what a supervisor starts) can serve.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.fakes import FakeUpstream, Fault
from tests.gateway.live import ROOT, LiveGateway, _wait_ready, start_gateway

# The servers these tests start use their own SQLite files, never the test database: scripts/test's
# PostgreSQL pass would only run them a second time.
pytestmark = pytest.mark.skipif(
    os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="servers on their own SQLite files: run in scripts/test's SQLite pass",
)

CLIENTS = 10
LOAD_S = 10.0
KILL_AT_S = 2.0
TERM_AT_S = 6.0
SETTLE_S = 2.0  # after a kill, every request must succeed once this has passed (generous: a busy machine)
UPSTREAM_DELAY_S = 0.03  # so that each worker holds requests in flight when it dies
BODY = {"model": "main", "messages": [{"role": "user", "content": "hello"}]}


def children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (granian's workers, for its master), from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def connections(pid: int, port: int) -> int:
    """The established TCP connections to `port` that process `pid` holds (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # ESTABLISHED
                inodes.add(fields[9])
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        held += target.startswith("socket:[") and target[8:-1] in inodes
    return held


def wait_for_workers(master: int, count: int, *, without: set[int], timeout: float = 10.0) -> set[int]:
    """The master's workers once there are `count` of them, none of them in `without`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = children(master)
        if len(workers) == count and not workers & without:
            return workers
        time.sleep(0.02)
    raise AssertionError(f"no new worker within {timeout}s: {children(master)} (gone: {without})")


@dataclass
class Outcome:
    start: float
    end: float
    ok: bool
    what: str


async def load(url: str, key: str, until: float) -> list[Outcome]:
    """CLIENTS keep-alive clients posting completions back to back until `until`."""
    outcomes: list[Outcome] = []
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    timeout = aiohttp.ClientTimeout(total=10)
    headers = {"authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            while (start := time.monotonic()) < until:
                try:
                    async with session.post(url, json=BODY, headers=headers) as response:
                        body = await response.json()
                        ok = response.status == 200 and body["choices"][0]["message"]["content"]
                        what = str(response.status)
                except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                    ok, what = False, type(exc).__name__
                outcomes.append(Outcome(start, time.monotonic(), bool(ok), what))

        await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return outcomes


def timeline(outcomes: list[Outcome], at: float) -> list[tuple[float, float, str]]:
    """Outcomes as (start, end) seconds from `at`, for an assertion's message."""
    return [(round(o.start - at, 3), round(o.end - at, 3), o.what) for o in outcomes]


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(models=("primary", "backup")) as fake:
        fake.set_default(Fault.ok(delay_s=UPSTREAM_DELAY_S))
        yield fake
        assert not fake.errors, fake.errors


def serve(fake: FakeUpstream, tmp_path: Path, workers: int, **env: str) -> LiveGateway:
    extra = {"RANA_BREAKER_ENABLED": "0", **env}
    return start_gateway(upstream_url=fake.base_url, workdir=tmp_path, workers=workers, extra_env=extra)


def test_a_dead_worker_costs_only_its_requests_and_is_replaced(fake, tmp_path):
    gateway = serve(fake, tmp_path, workers=2)
    try:
        master = gateway.process.pid
        port = int(gateway.base_url.rsplit(":", 1)[1].split("/")[0])
        first = wait_for_workers(master, 2, without=set())
        events: dict[str, float] = {}
        replaced: dict[str, int] = {}
        held_at: dict[str, dict[int, int]] = {}
        killed_pid: list[int] = []
        lost: dict[str, int] = {}

        async def scenario() -> list[Outcome]:
            t0 = time.monotonic()
            running = asyncio.create_task(
                load(f"{gateway.base_url}/chat/completions", gateway.keys["full"], t0 + LOAD_S)
            )
            await asyncio.sleep(KILL_AT_S)
            # the worker holding the clients' connections (one may hold them all)
            held = {pid: connections(pid, port) for pid in first}
            killed = max(held, key=held.__getitem__)
            (termed,) = first - {killed}
            killed_pid.extend((killed, termed))
            held_at["kill"] = held
            assert held[killed] > 0, held
            events["kill"] = time.monotonic()
            os.kill(killed, signal.SIGKILL)
            now = await asyncio.to_thread(wait_for_workers, master, 2, without={killed})
            replaced["kill"] = (now - first).pop()
            await asyncio.sleep(max(0.0, t0 + TERM_AT_S - time.monotonic()))
            held = {pid: connections(pid, port) for pid in now}
            held_at["term"] = held
            assert held[termed] > 0, held
            events["term"] = time.monotonic()
            os.kill(termed, signal.SIGTERM)
            after = await asyncio.to_thread(wait_for_workers, master, 2, without=first)
            replaced["term"] = (after - now).pop()
            return await running

        outcomes = asyncio.run(scenario())
        assert gateway.process.poll() is None, gateway.log_path.read_text()
        assert children(master) == {replaced["kill"], replaced["term"]}

        failed = [o for o in outcomes if not o.ok]
        victims = {"kill": killed_pid[0], "term": killed_pid[1]}
        for name, at in events.items():
            # Failures only around a death, at most one per connection the dead worker held:
            # the request in flight on it, or the next one sent on it before the client heard
            # it close (a little slack for a connection opened just before the signal).
            near = [o for o in failed if at - 0.5 <= o.end <= at + SETTLE_S]
            lost[name] = len(near)
            assert len(near) <= held_at[name][victims[name]] + 2, (name, timeline(near, at), held_at)
            settled = [o for o in outcomes if at + SETTLE_S <= o.start < at + SETTLE_S + 1.5]
            assert len(settled) > 20, (name, len(settled))
            assert all(o.ok for o in settled), (name, timeline([o for o in settled if not o.ok], at))
        stray = [o for o in failed if not any(at - 0.5 <= o.end <= at + SETTLE_S for at in events.values())]
        assert stray == [], timeline(stray, events["kill"])
        assert sum(o.ok for o in outcomes) > 10 * LOAD_S  # it kept answering all along
        print(
            f"\n{len(outcomes)} requests, {len(failed)} failed {lost} "
            f"({', '.join(sorted({o.what for o in failed})) or 'none'}); replaced: {replaced}; "
            f"held: {held_at}"
        )
    finally:
        gateway.stop()


def test_sigterm_to_the_master_drains_in_flight_requests_and_writes_the_ledger(fake, tmp_path):
    # A flush interval far longer than the test: rows in the database after the exit can only
    # come from the flush in the workers' lifespan shutdown.
    gateway = serve(fake, tmp_path, workers=2, RANA_LEDGER_FLUSH_MS="600000", RANA_SHUTDOWN_TIMEOUT_S="20")
    slow = 3
    fake.script(None, [Fault.ok(delay_s=1.5)] * slow, model="primary")
    fake.script(None, [Fault.drip(delay_s=0.02, chunk_size=16)], model="solo")  # a 2 s stream

    async def scenario() -> tuple[list[int], bytes, float]:
        headers = {"authorization": f"Bearer {gateway.keys['full']}"}
        url = f"{gateway.base_url}/chat/completions"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:

            async def one() -> int:
                async with session.post(url, json=BODY, headers=headers) as r:
                    body = await r.json()
                    assert body["choices"][0]["message"]["content"] == "Hello from the fake upstream."
                    return r.status

            calls = [asyncio.create_task(one()) for _ in range(slow)]
            streamed = {**BODY, "model": "solo", "stream": True}
            async with session.post(url, json=streamed, headers=headers) as stream:
                assert stream.status == 200
                first = await stream.content.readany()  # the stream has begun
                while len(fake.requests) < slow + 1:
                    await asyncio.sleep(0.01)
                gateway.process.send_signal(signal.SIGTERM)
                sent = time.monotonic()
                rest = await stream.read()
            return await asyncio.gather(*calls), first + rest, sent

    try:
        statuses, streamed, sent = asyncio.run(scenario())
        assert statuses == [200] * slow
        assert streamed.rstrip().endswith(b"data: [DONE]")  # the stream finished too
        assert gateway.process.wait(timeout=15) == 0, gateway.log_path.read_text()
        assert time.monotonic() - sent < 12
        rows = gateway.query("select outcome, count(*) from providers_completion group by outcome")
        assert rows == [("success", slow + 1)]
    finally:
        gateway.stop()


def test_when_the_master_is_killed_its_workers_finish_and_a_new_master_takes_the_port(fake, tmp_path):
    """kill -9 of the master (the OOM killer may choose it): its workers drain and exit instead
    of serving on as orphans, so the master a supervisor starts again can bind the port."""
    gateway = serve(fake, tmp_path, workers=2)
    master = gateway.process.pid
    workers = wait_for_workers(master, 2, without=set())
    fake.script(None, [Fault.ok(delay_s=2.5)])  # in flight across the kill

    async def in_flight_across_the_kill() -> int:
        headers = {"authorization": f"Bearer {gateway.keys['full']}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            call = asyncio.create_task(
                session.post(f"{gateway.base_url}/chat/completions", json=BODY, headers=headers)
            )
            while not fake.requests:
                await asyncio.sleep(0.01)
            os.kill(master, signal.SIGKILL)
            async with await call as response:
                await response.read()
                return response.status

    restarted = None
    try:
        try:
            status = asyncio.run(in_flight_across_the_kill())
        except TimeoutError:
            pytest.fail(f"the orphaned workers did not answer in time\n{gateway.log_path.read_text()}")
        assert status == 200  # the orphaned worker drained it
        gateway.process.wait(timeout=5)
        # draining, then the lifespan shutdown (whose ledger flush may wait up to 10 s)
        deadline = time.monotonic() + 20
        t0 = time.monotonic()
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, (
                f"the workers outlived their master\n{gateway.log_path.read_text()}"
            )
            time.sleep(0.05)
        print(f"\nworkers gone {time.monotonic() - t0:.2f}s after the master")
        port = gateway.base_url.rsplit(":", 1)[1].split("/")[0]
        with (tmp_path / "restart.log").open("w") as log:
            restarted = subprocess.Popen(
                [str(ROOT / "scripts" / "serve")],
                cwd=ROOT,
                env={**gateway.env, "RANA_HOST": "127.0.0.1", "RANA_PORT": port, "RANA_WORKERS": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait_ready(gateway.base_url.removesuffix("/v1") + "/healthz", restarted, tmp_path / "restart.log")
    finally:
        gateway.stop()
        if restarted is not None and restarted.poll() is None:
            restarted.send_signal(signal.SIGINT)
            restarted.wait(timeout=10)
        for pid in workers:  # only if the test failed: nothing of this test may outlive it
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_settings_become_granians_options():
    from types import SimpleNamespace

    from rana_site.serve import granian_args

    settings = SimpleNamespace(
        RANA_HOST="127.0.0.1",
        RANA_PORT=8123,
        RANA_WORKERS=3,
        RANA_MAX_CONNECTIONS=4000,
        RANA_HEADER_TIMEOUT_S=2.5,
        RANA_SHUTDOWN_TIMEOUT_S=40,
    )
    args = granian_args(settings)
    options = dict(itertools.pairwise(args))
    assert "--respawn-failed-workers" in args and args[-1] == "rana_site.asgi:application"
    assert options["--workers"] == "3" and options["--port"] == "8123"
    assert options["--workers-kill-timeout"] == "40"
    assert options["--backpressure"] == "4000" and options["--backlog"] == "4000"
    assert options["--http1-header-read-timeout"] == "2500"
    with pytest.raises(SystemExit, match="RANA_HEADER_TIMEOUT_S=90 is out of range"):
        granian_args(SimpleNamespace(**{**vars(settings), "RANA_HEADER_TIMEOUT_S": 90}))
