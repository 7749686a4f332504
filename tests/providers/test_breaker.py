"""The circuit breaker: opens on repeated or serious failures, probes, closes on success."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.cache import cache

from providers.engine.clock import FakeClock
from providers.engine.results import AllProvidersFailed, AttemptRecord
from providers.models import Attempt, ChainStep, FallbackChain, Provider
from providers.services.breaker import CircuitBreaker
from providers.services.completions import complete
from tests.providers.engine_fakes import ScriptedAdapter, fail, ok, step


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

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


@pytest.fixture
def clock():
    return Ticks()


@pytest.fixture
def breaker(clock):
    return CircuitBreaker(threshold=3, cooldown_s=30, long_cooldown_s=300, clock=clock)


STEP = step(0, "p")  # provider id 1, model "m"


def test_opens_after_threshold_consecutive_transient_failures(breaker):
    for _ in range(2):
        breaker.record(record("server_error"))
    assert not breaker.is_open(STEP)
    breaker.record(record("timeout"))
    assert breaker.is_open(STEP)
    assert breaker.states()[0]["state"] == "open"


def test_a_success_resets_the_count(breaker):
    breaker.record(record("server_error"))
    breaker.record(record("server_error"))
    breaker.record(record("success"))
    breaker.record(record("server_error"))
    assert not breaker.is_open(STEP)


def test_after_cooldown_one_probe_goes_through_and_success_closes(breaker, clock):
    for _ in range(3):
        breaker.record(record("connection_error"))
    clock.now += 30
    assert not breaker.is_open(STEP)  # the probe
    assert breaker.is_open(STEP)  # everyone else waits for the probe
    breaker.record(record("success"))
    assert not breaker.is_open(STEP)


def test_a_failed_probe_reopens_for_another_cooldown(breaker, clock):
    for _ in range(3):
        breaker.record(record("server_error"))
    clock.now += 30
    assert not breaker.is_open(STEP)
    breaker.record(record("server_error"))
    assert breaker.is_open(STEP)
    clock.now += 29
    assert breaker.is_open(STEP)


@pytest.mark.parametrize("ending", [{"outcome": "cancelled"}, {"outcome": "server_error", "injected": True}])
def test_a_probe_that_is_cancelled_or_injected_gives_its_slot_back(breaker, clock, ending):
    for _ in range(3):
        breaker.record(record("server_error"))
    clock.now += 30
    assert not breaker.is_open(STEP)  # the probe goes out ...
    breaker.record(record(**ending))  # ... and ends without a verdict
    assert not breaker.is_open(STEP)  # the next caller probes instead of waiting forever
    breaker.record(record("success"))
    assert not breaker.is_open(STEP) and breaker.states() == []


def test_auth_and_quota_errors_open_at_once_for_the_long_cooldown(breaker, clock):
    breaker.record(record("auth_error"))
    assert breaker.is_open(STEP)
    clock.now += 299
    assert breaker.is_open(STEP)
    clock.now += 1
    assert not breaker.is_open(STEP)


def test_rate_limit_cools_down_for_retry_after(breaker, clock):
    breaker.record(record("rate_limited", retry_after_s=10))
    assert breaker.is_open(STEP)
    clock.now += 10
    assert not breaker.is_open(STEP)
    breaker.record(record("rate_limited"))  # no Retry-After: no cooldown
    assert not breaker.is_open(STEP)


def test_retry_in_says_why_a_circuit_is_open_and_for_how_long(breaker, clock):
    assert breaker.retry_in(STEP) is None  # never failed
    breaker.record(record("rate_limited", retry_after_s=12))
    clock.now += 2
    assert breaker.retry_in(STEP) == ("rate_limited", 10)
    breaker.record(record("auth_error"))
    assert breaker.retry_in(STEP) == ("circuit_open", 300)
    clock.now += 300
    assert breaker.retry_in(STEP) is None  # half-open: the next caller may probe
    assert not breaker.is_open(STEP)  # the probe goes out
    assert breaker.retry_in(STEP) == ("circuit_open", 0)  # others wait for its verdict
    breaker.record(record("success"))
    assert breaker.retry_in(STEP) is None


@pytest.mark.parametrize("outcome", ["invalid_request", "context_length", "content_filter", "cancelled"])
def test_caller_errors_and_cancellations_never_count(breaker, outcome):
    for _ in range(5):
        breaker.record(record(outcome))
    assert not breaker.is_open(STEP)


def test_injected_faults_never_count(breaker):
    for _ in range(5):
        breaker.record(record("server_error", injected=True))
    assert not breaker.is_open(STEP)


def test_circuits_are_per_provider_and_model(breaker):
    breaker.record(record("auth_error", model="other"))
    assert not breaker.is_open(STEP)


@pytest.mark.django_db(transaction=True)
async def test_service_skips_an_open_circuit_without_calling_it():
    cache.clear()
    bad = await Provider.objects.acreate(name="bad", kind="simulated")
    good = await Provider.objects.acreate(name="good", kind="simulated")
    chain = await FallbackChain.objects.acreate(name="c", slug="c", default_retries=0)
    await ChainStep.objects.acreate(chain=chain, position=0, provider=bad, model="m")
    await ChainStep.objects.acreate(chain=chain, position=1, provider=good, model="m")
    adapter = ScriptedAdapter(FakeClock())
    adapter.script("bad", "m", fail("auth_error", status=401))
    adapter.script("good", "m", ok("one"), ok("two"))
    overrides = {"adapter_for": lambda kind: adapter, "clock": adapter.clock}
    await complete(chain="c", messages=[{"role": "user", "content": "hi"}], overrides=overrides)
    second = await complete(chain="c", messages=[{"role": "user", "content": "hi"}], overrides=overrides)
    assert adapter.calls_to("bad") == 1 and second.text == "two"
    rows = [a.outcome async for a in Attempt.objects.filter(completion_id=second.request_id).order_by("id")]
    assert rows == ["circuit_open", "success"]


@pytest.mark.django_db(transaction=True)
async def test_all_circuits_open_fails_fast_with_no_call():
    cache.clear()
    only = await Provider.objects.acreate(name="only", kind="simulated")
    chain = await FallbackChain.objects.acreate(name="solo", slug="solo", default_retries=0)
    await ChainStep.objects.acreate(chain=chain, position=0, provider=only, model="m")
    adapter = ScriptedAdapter(FakeClock())
    adapter.script("only", "m", fail("quota_exhausted", status=429))
    overrides = {"adapter_for": lambda kind: adapter, "clock": adapter.clock}
    for _ in range(2):
        with pytest.raises(AllProvidersFailed) as info:
            await complete(chain="solo", messages=[{"role": "user", "content": "hi"}], overrides=overrides)
    assert info.value.failure_class == "circuit_open" and adapter.calls_to("only") == 1
