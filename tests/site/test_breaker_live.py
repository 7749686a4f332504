"""Circuits shared for real: gateways served by scripts/serve (granian), each its own process,
on one Redis (RANA_TEST_REDIS_URL, or one the test starts and kills), in front of a fake
upstream whose `broken` and `flaky` models always answer 503.

Both gateways are seeded alike (tests/gateway/seed.py: one provider, id 1), so their chains'
steps are the same circuits. Chain `fallback`: `broken`, then `backup`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.fakes import FakeUpstream, Fault
from tests.gateway.live import LiveGateway, free_port, start_gateway
from tests.servers import server_url

# The servers these tests start use their own SQLite files, never the test database: scripts/test's
# PostgreSQL pass would only run them a second time.
pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(
        os.environ.get("DATABASE_URL", "").startswith("postgres"),
        reason="servers on their own SQLite files: run in scripts/test's SQLite pass",
    ),
]

THRESHOLD = 5
HELLO = [{"role": "user", "content": "hi"}]
CIRCUIT = "rana:1:breaker:c:1:{model}"  # KEY_PREFIX "rana", version 1, provider id 1
WINDOW = "rana:1:breaker:w:1:{model}"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(models=("primary", "backup")) as fake:
        for model in ("broken", "flaky"):
            fake.set_default(Fault.error("server_error"), model=model)
        yield fake
        assert not fake.errors, fake.errors


def serve(fake: FakeUpstream, workdir: Path, redis_url: str, workers: int = 1) -> LiveGateway:
    env = {
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": "memory://",
        "RANA_BREAKER_THRESHOLD": str(THRESHOLD),
        "RANA_BREAKER_COOLDOWN_S": "600",  # no probe while the tests run
    }
    return start_gateway(upstream_url=fake.base_url, workdir=workdir, workers=workers, extra_env=env)


@pytest.fixture(scope="module")
def shared_redis() -> redis.Redis:
    url = server_url("RANA_TEST_REDIS_URL").rsplit("/", 1)[0] + "/7"
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    client.url = url
    return client


@pytest.fixture(scope="module")
def two_gateways(fake, shared_redis, tmp_path_factory) -> Iterator[tuple[LiveGateway, LiveGateway]]:
    gateways = []
    try:
        for name in ("first", "second"):
            gateways.append(serve(fake, tmp_path_factory.mktemp(name), shared_redis.url))
        yield tuple(gateways)
    finally:
        for gateway in gateways:
            gateway.stop()


def ask(gateway: LiveGateway, client: httpx.Client, chain: str) -> list[str]:
    """One request through `chain`: the outcome of each of its attempts."""
    headers = {"Authorization": f"Bearer {gateway.keys['full']}"}
    response = client.post(
        f"{gateway.base_url}/chat/completions", json={"model": chain, "messages": HELLO}, headers=headers
    )
    assert response.status_code == 200, response.text
    return [a["outcome"] for a in response.json()["rana"]["attempts"]]


def test_a_provider_opened_in_one_process_is_skipped_by_another_within_a_second(two_gateways):
    first, second = two_gateways
    with httpx.Client(timeout=10) as client:
        assert ask(second, client, "fallback") == ["server_error", "success"]  # 1 of the threshold
        seen = [ask(first, client, "fallback") for _ in range(THRESHOLD - 1)]
        assert seen == [["server_error", "success"]] * (THRESHOLD - 1)  # the last one opened it
        opened = time.monotonic()
        calls = []
        while (outcomes := ask(second, client, "fallback"))[0] != "circuit_open":
            calls.append(outcomes)
            assert time.monotonic() - opened < 1.0, calls
        # Heard of at once (published); at worst its own next failure's verdict tells it.
        assert len(calls) <= 1, calls
        assert ask(first, client, "fallback") == ["circuit_open", "success"]


def window(client: redis.Redis, model: str) -> tuple[int, int]:
    """(calls, failures) in a circuit's failure-rate window, every bucket."""
    counts = client.hgetall(WINDOW.format(model=model))
    calls = sum(int(v) for k, v in counts.items() if k.startswith("c"))
    return calls, sum(int(v) for k, v in counts.items() if k.startswith("f"))


def test_counters_stay_exact_under_fifty_concurrent_requests_across_two_processes(two_gateways, shared_redis):
    first, second = two_gateways
    code = (
        "from providers.models import ChainStep, FallbackChain, Provider; p = Provider.objects.get(); "
        "c = FallbackChain.objects.create(name='Lenient', slug='lenient', default_retries=0, "
        "breaker_threshold=1000, breaker_min_calls=1000); "
        "ChainStep.objects.create(chain=c, position=0, provider=p, model='flaky'); "
        "ChainStep.objects.create(chain=c, position=1, provider=p, model='backup')"
    )
    for gateway in two_gateways:
        done = gateway.manage("shell", "--no-imports", "-c", code)
        assert done.returncode == 0, done.stderr
    time.sleep(1.2)  # the workers see the new configuration within RANA_CONFIG_RECHECK_S
    backup_before = window(shared_redis, "backup")[0]  # the earlier tests' answers

    async def fifty() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:

            async def one(gateway: LiveGateway) -> int:
                headers = {"Authorization": f"Bearer {gateway.keys['full']}"}
                body = {"model": "lenient", "messages": HELLO}
                response = await client.post(
                    f"{gateway.base_url}/chat/completions", json=body, headers=headers
                )
                return response.status_code

            return await asyncio.gather(*(one(g) for _ in range(25) for g in (first, second)))

    assert asyncio.run(fifty()) == [200] * 50

    assert shared_redis.hget(CIRCUIT.format(model="flaky"), "n") == "50"
    assert window(shared_redis, "flaky") == (50, 50)
    deadline = time.monotonic() + 2  # successes are sent behind the answers, within 20 ms
    while window(shared_redis, "backup")[0] - backup_before < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    calls, failures = window(shared_redis, "backup")
    assert (calls - backup_before, failures) == (50, 0)


@pytest.fixture
def own_redis(tmp_path) -> Iterator[tuple[str, subprocess.Popen]]:
    """A redis-server of this test's own, to kill."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no redis-server")
    port = free_port()
    command = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([*command, "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 5
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "the test's redis-server did not start"
            time.sleep(0.02)
    yield url, process
    process.kill()
    process.wait()


def test_requests_still_succeed_with_redis_stopped_mid_test(fake, own_redis, tmp_path):
    url, redis_process = own_redis
    gateway = serve(fake, tmp_path, url, workers=2)
    try:
        with httpx.Client(timeout=10) as client:
            assert ask(gateway, client, "main") == ["success"]
            redis_process.kill()
            redis_process.wait()
            slowest = 0.0
            seen = []
            for _ in range(4 * THRESHOLD):  # each worker opens its own circuit after THRESHOLD
                started = time.monotonic()
                seen.append(ask(gateway, client, "fallback"))
                slowest = max(slowest, time.monotonic() - started)
        assert ["circuit_open", "success"] in seen
        assert slowest < 1.0, slowest
        warnings = gateway.log_path.read_text().count("circuit breaker: Redis is unreachable")
        assert 1 <= warnings <= 2, gateway.log_path.read_text()  # once per worker that noticed
    finally:
        gateway.stop()
