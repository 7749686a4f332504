"""Shared pieces of the circuit breaker tests: a fake clock, the two places circuits live
(this process, and Redis from RANA_TEST_REDIS_URL), and engine hooks through a CircuitGate."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable

import pytest

from providers.engine.clock import FakeClock
from providers.engine.plan import StepPlan
from providers.engine.results import AttemptRecord
from providers.services.breaker import CircuitBreaker
from providers.services.breaker_local import LocalCircuits
from providers.services.breaker_policy import BreakerPolicy
from providers.services.breaker_shared import SharedCircuits
from tests.providers.engine_fakes import make_deps, step
from tests.servers import server_url

STEP = step(0, "p")  # provider id 1, model "m"
POLICY = BreakerPolicy(threshold=3, min_calls=1000, cooldown_s=30, cooldown_cap_s=240, probe_lease_s=65)
BACKENDS = ["local", pytest.param("redis", marks=pytest.mark.redis)]


class Ticks:
    """The breaker's clock (wall-clock seconds), moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def record(outcome: str, *, provider_id: int = 1, model: str = "m", **kwargs) -> AttemptRecord:
    return AttemptRecord(
        step_position=0,
        provider_id=provider_id,
        provider_name="p",
        provider_kind="fake",
        model=model,
        retry_index=0,
        outcome=outcome,
        started_at=dt.datetime.now(dt.UTC),
        latency_ms=1.0,
        **kwargs,
    )


def shared_circuits(
    clock: Callable[[], float], prefix: str, url: str | None = None, make_key: Callable | None = None
) -> SharedCircuits:
    """One process's view of the circuits in Redis (its own mirror and background thread)."""
    url = url or server_url("RANA_TEST_REDIS_URL")
    return SharedCircuits(url, make_key or (lambda name: f"{prefix}:{name}"), clock)


@pytest.fixture
def clock() -> Ticks:
    return Ticks()


@pytest.fixture
def prefix() -> str:
    return f"rana-breaker-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=BACKENDS)
def circuits(request, clock, prefix):
    """Where the circuits live: this process's memory, or Redis (shared by processes)."""
    if request.param == "local":
        yield LocalCircuits()
        return
    shared = shared_circuits(clock, prefix)
    yield shared
    shared.clear()
    shared.close()


@pytest.fixture
def breaker(circuits, clock) -> CircuitBreaker:
    return CircuitBreaker(POLICY, clock=clock, circuits=circuits)


def open_circuit(breaker: CircuitBreaker, outcome: str = "server_error") -> None:
    for _ in range(POLICY.threshold):
        breaker.record(record(outcome))


def probe_is_free(breaker: CircuitBreaker, at: StepPlan = STEP) -> bool:
    """Whether a new request would be let through as the probe now (the slot is handed back)."""
    gate = breaker.gate()
    free = not gate.is_open(at)
    gate.release_probe(at)
    return free


def gate_deps(breaker: CircuitBreaker, adapter, policy: BreakerPolicy | None = None, **hooks):
    """Engine hooks as engine_deps makes them for one request (without the ledger)."""
    gate = breaker.gate(policy)
    wired = {"is_circuit_open": gate.is_open, "on_attempt": gate.record, "release_probe": gate.release_probe}
    adapter_for = hooks.pop("adapter_for", None)
    deps = make_deps(adapter, FakeClock(), **(wired | hooks))
    if adapter_for is not None:
        deps.adapter_for = adapter_for
    return deps


def poll(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
