"""Circuits in Redis, between processes (here: two breakers, each with its own mirror, as two
processes have), and what a process does when Redis is away. tests/site/test_breaker_live.py
does the same with real processes."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time

import pytest

from providers.services.breaker import CircuitBreaker
from providers.services.breaker_policy import BreakerPolicy
from providers.services.breaker_shared import REQUEST_TIMEOUT_S, RETRY_S
from tests.fakes.upstream import refused_port
from tests.gateway.live import free_port
from tests.providers import breaker_fixtures
from tests.providers.breaker_fixtures import POLICY, STEP, open_circuit, poll, record, shared_circuits

clock, prefix = breaker_fixtures.clock, breaker_fixtures.prefix  # fixtures

pytestmark = pytest.mark.redis


@pytest.fixture
def two_processes(clock, prefix):
    """Two breakers on one Redis, each with its own mirror and background thread."""
    circuits = [shared_circuits(clock, prefix) for _ in range(2)]
    yield [CircuitBreaker(POLICY, clock=clock, circuits=c) for c in circuits]
    circuits[0].clear()
    for c in circuits:
        c.close()


def test_a_circuit_opened_by_one_process_is_skipped_by_another_within_a_second(two_processes):
    first, second = two_processes
    assert not second.is_open(STEP)  # its mirror is filled and kept from here on
    open_circuit(first)
    started = time.monotonic()
    assert poll(lambda: second.is_open(STEP), timeout=1.0)
    assert time.monotonic() - started < 1.0


def test_a_probes_success_in_one_process_closes_the_circuit_for_the_other(two_processes, clock):
    first, second = two_processes
    open_circuit(first)
    assert poll(lambda: second.is_open(STEP), timeout=1.0)
    clock.now += POLICY.cooldown_s
    assert not first.is_open(STEP)  # the probe
    assert second.is_open(STEP)  # the other process waits for it
    first.record(record("success"))
    assert poll(lambda: not second.is_open(STEP), timeout=1.0)


def test_counts_are_exact_when_two_processes_record_at_once(two_processes):
    from concurrent.futures import ThreadPoolExecutor

    first, second = two_processes
    lenient = BreakerPolicy(threshold=10_000, min_calls=10_000)

    def fail(breaker) -> None:
        breaker.record(record("server_error"), lenient)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fail, [first, second] * 50))
    for breaker in two_processes:
        breaker.flush()
    (row,) = first.states()
    assert (row["consecutive_failures"], row["window_calls"], row["failure_rate"]) == (100, 100, 1.0)


def test_a_dead_redis_costs_no_request_its_answer_and_is_logged_once(clock, prefix, caplog):
    dead = shared_circuits(clock, prefix, url=f"redis://127.0.0.1:{refused_port()}/0")
    breaker = CircuitBreaker(POLICY, clock=clock, circuits=dead)
    try:
        with caplog.at_level(logging.WARNING, logger="rana.breaker"):
            started = time.monotonic()
            assert not breaker.is_open(STEP)
            open_circuit(breaker)  # this process's own circuits
            assert breaker.is_open(STEP)
            elapsed = time.monotonic() - started
        assert elapsed < 5 * REQUEST_TIMEOUT_S
        (logged,) = caplog.records
        assert "Redis is unreachable" in logged.getMessage()
    finally:
        dead.close()


def test_circuits_are_shared_again_once_redis_is_back(clock, prefix, tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no redis-server")
    port = free_port()
    command = [server, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    redis_process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    circuits = shared_circuits(clock, prefix, url=url)
    breaker = CircuitBreaker(POLICY, clock=clock, circuits=circuits)
    try:
        assert poll(lambda: _answers(url), timeout=5)
        assert not breaker.is_open(STEP) and not circuits.down
        redis_process.kill()
        redis_process.wait()
        open_circuit(breaker)  # Redis is away: counted in this process
        assert circuits.down and breaker.is_open(STEP)
        redis_process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        assert poll(lambda: not circuits.down, timeout=RETRY_S + 5)
        assert not breaker.is_open(STEP)  # Redis, fresh, knows of no open circuit
        open_circuit(breaker)
        assert breaker.states()[0]["state"] == "open"  # read from Redis
    finally:
        circuits.close()
        redis_process.kill()
        redis_process.wait()


def _answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.2).ping())
    except redis.RedisError:
        return False
