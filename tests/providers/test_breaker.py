"""The circuit breaker's rules, on a fake clock, with the circuits in this process and in Redis."""

from __future__ import annotations

import dataclasses

import pytest
from django.core.cache import cache

from providers.engine.clock import FakeClock
from providers.engine.results import AllProvidersFailed
from providers.models import Attempt, ChainStep, FallbackChain, Provider
from providers.services.breaker_local import PROBE_WAIT_S
from providers.services.breaker_policy import PROBE_GRACE_S, breaker_policy
from providers.services.completions import complete
from tests.providers import breaker_fixtures
from tests.providers.breaker_fixtures import (
    POLICY,
    STEP,
    open_circuit,
    record,
)
from tests.providers.engine_fakes import ScriptedAdapter, fail, ok

breaker, circuits, clock, prefix = (
    breaker_fixtures.breaker,
    breaker_fixtures.circuits,
    breaker_fixtures.clock,
    breaker_fixtures.prefix,
)  # fixtures


def test_opens_after_threshold_consecutive_transient_failures(breaker):
    for outcome in ("server_error", "bad_response"):
        breaker.record(record(outcome))
    assert not breaker.is_open(STEP)
    breaker.record(record("timeout"))
    assert breaker.is_open(STEP)
    (row,) = breaker.states()
    assert (row["state"], row["reason"], row["consecutive_failures"]) == ("open", "timeout", 3)


def test_a_success_resets_the_consecutive_count(breaker):
    breaker.record(record("server_error"))
    breaker.record(record("connection_error"))
    breaker.record(record("success"))
    breaker.record(record("server_error"))
    breaker.record(record("server_error"))
    assert not breaker.is_open(STEP)
    breaker.flush()
    assert breaker.states()[0]["consecutive_failures"] == 2


def test_opens_on_the_failure_rate_over_the_window_once_it_holds_min_calls(circuits, clock):
    from providers.services.breaker import CircuitBreaker

    policy = dataclasses.replace(POLICY, threshold=100, failure_rate=0.5, window_s=60, min_calls=10)
    breaker = CircuitBreaker(policy, clock=clock, circuits=circuits)
    for _ in range(4):  # 9 calls, 5 failed: past the rate, short of min calls
        breaker.record(record("success"))
        breaker.record(record("server_error"))
    breaker.record(record("server_error"))
    assert not breaker.is_open(STEP)
    breaker.record(record("success"))  # a success never opens it, whatever the rate
    assert not breaker.is_open(STEP)
    breaker.record(record("timeout"))  # 11 calls, 6 failed
    assert breaker.is_open(STEP)
    assert breaker.states()[0]["reason"] == "timeout"


def test_calls_older_than_the_window_do_not_count(circuits, clock):
    from providers.services.breaker import CircuitBreaker

    policy = dataclasses.replace(POLICY, threshold=100, failure_rate=0.5, window_s=60, min_calls=10)
    breaker = CircuitBreaker(policy, clock=clock, circuits=circuits)
    for _ in range(9):
        breaker.record(record("server_error"))
        breaker.record(record("success"))  # keeps the consecutive count low
    clock.now += 62  # those 18 calls slid out of the window
    for _ in range(8):
        breaker.record(record("success"))
    breaker.record(record("server_error"))
    breaker.record(record("server_error"))  # 10 calls in the window, 2 failed
    assert not breaker.is_open(STEP)
    breaker.flush()
    row = breaker.states()[0]
    assert (row["window_calls"], row["failure_rate"]) == (10, 0.2)


def test_the_cooldown_doubles_on_each_failed_probe_up_to_the_cap_and_resets_after_a_success(breaker, clock):
    open_circuit(breaker)
    for cooldown in (30, 60, 120, 240, 240):  # the cap is 240
        clock.now += cooldown - 1
        assert breaker.is_open(STEP)
        clock.now += 1
        assert not breaker.is_open(STEP)  # the probe...
        breaker.record(record("server_error"))  # ... fails
    assert breaker.retry_in(STEP) == ("circuit_open", 240)
    clock.now += 240
    assert not breaker.is_open(STEP)
    breaker.record(record("success"))  # the probe closes it
    assert not breaker.is_open(STEP)
    open_circuit(breaker)
    breaker.flush()  # Redis: a verdict sent while the thread sends the queued success waits for it
    assert breaker.retry_in(STEP) == ("circuit_open", 30)  # back to the first cooldown


def test_after_the_cooldown_one_probe_goes_through_and_its_success_closes(breaker, clock):
    open_circuit(breaker, "connection_error")
    clock.now += 30
    assert not breaker.is_open(STEP)  # the probe
    assert breaker.is_open(STEP)  # everyone else waits for its verdict
    assert breaker.retry_in(STEP) == ("circuit_open", PROBE_WAIT_S)
    breaker.record(record("success"))
    assert not breaker.is_open(STEP) and breaker.retry_in(STEP) is None
    breaker.flush()
    assert breaker.states()[0]["state"] == "closed"


def test_a_retry_after_cooldown_is_never_shortened_by_a_later_shorter_one(breaker, clock):
    breaker.record(record("rate_limited", retry_after_s=20))
    assert breaker.retry_in(STEP) == ("rate_limited", 20)
    clock.now += 5
    breaker.record(record("rate_limited", retry_after_s=3))
    assert breaker.retry_in(STEP) == ("rate_limited", 15)
    breaker.record(record("rate_limited", retry_after_s=30))  # a longer one lengthens it
    assert breaker.retry_in(STEP) == ("rate_limited", 30)
    clock.now += 30
    assert not breaker.is_open(STEP)


def test_a_rate_limit_never_shortens_an_open_circuits_cooldown(breaker, clock):
    open_circuit(breaker)
    breaker.record(record("rate_limited", retry_after_s=5))
    assert breaker.retry_in(STEP) == ("circuit_open", 30)


def test_a_rate_limit_without_retry_after_opens_nothing(breaker):
    breaker.record(record("rate_limited"))
    assert not breaker.is_open(STEP)


@pytest.mark.parametrize("outcome", ["auth_error", "quota_exhausted"])
def test_auth_and_quota_errors_open_at_once_for_the_long_cooldown(breaker, clock, outcome):
    breaker.record(record(outcome))
    assert breaker.retry_in(STEP) == ("circuit_open", 300)
    clock.now += 299
    assert breaker.is_open(STEP)
    clock.now += 1
    assert not breaker.is_open(STEP)  # the probe
    breaker.record(record(outcome))  # a failed probe: the long cooldown again, never doubled
    assert breaker.retry_in(STEP) == ("circuit_open", 300)


@pytest.mark.parametrize(
    "ending",
    [
        {"outcome": "invalid_request"},
        {"outcome": "context_length"},
        {"outcome": "content_filter"},
        {"outcome": "cancelled"},
        {"outcome": "server_error", "injected": True},
    ],
)
def test_caller_errors_cancellations_and_injected_faults_never_count(breaker, ending):
    for _ in range(5):
        breaker.record(record(**ending))
    assert not breaker.is_open(STEP)
    assert breaker.states() == []


def test_circuits_are_per_provider_and_model(breaker):
    breaker.record(record("auth_error", model="other"))
    breaker.record(record("auth_error", provider_id=2))
    assert not breaker.is_open(STEP)


def test_states_lists_each_circuit_with_its_figures(breaker, clock):
    open_circuit(breaker)
    clock.now += 10
    (row,) = breaker.states()
    assert row == {
        "provider_id": 1,
        "model": "m",
        "state": "open",
        "reason": "server_error",
        "cooldown_remaining_s": 20.0,
        "consecutive_failures": 3,
        "last_failure_class": "server_error",
        "failure_rate": None,  # the window starts again when a circuit opens
        "window_calls": 0,
        "changed_at": clock.now - 10,
        "manual": False,
        "probe_in_flight": False,
        "cooldown_s": 30.0,
    }


# -- a chain's overrides, and the off switches -------------------------------------------


def test_a_chains_threshold_decides_for_its_own_requests(breaker):
    strict = dataclasses.replace(POLICY, threshold=1)
    breaker.gate(strict).record(record("server_error"))
    assert breaker.is_open(STEP)  # the circuit is shared: every chain now skips it


def test_a_chain_with_the_breaker_off_never_skips_but_still_counts(breaker):
    off = dataclasses.replace(POLICY, enabled=False)
    gate = breaker.gate(off)
    for _ in range(3):
        gate.record(record("server_error"))
    assert not gate.is_open(STEP) and breaker.retry_in(STEP, off) is None
    assert breaker.is_open(STEP)  # for the other chains


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
    assert breaker.retry_in(STEP) == ("circuit_open", 1.0)  # others wait a second for its verdict
    breaker.record(record("success"))
    assert breaker.retry_in(STEP) is None


def test_the_breaker_switched_off_globally_neither_skips_nor_counts(breaker):
    off = dataclasses.replace(POLICY, enabled=False, counts=False)
    gate = breaker.gate(off)
    for _ in range(5):
        gate.record(record("auth_error"))
    assert not gate.is_open(STEP) and breaker.states() == []


@pytest.mark.django_db
def test_a_chains_policy_is_the_settings_with_its_overrides(settings):
    settings.RANA_BREAKER_THRESHOLD, settings.RANA_BREAKER_MIN_CALLS = 7, 40
    chain = FallbackChain.objects.create(
        name="c",
        slug="c",
        deadline_s=20,
        breaker_threshold=2,
        breaker_failure_rate_pct=25,
        breaker_window_s=30,
    )
    policy = breaker_policy(chain)
    assert (policy.threshold, policy.failure_rate, policy.window_s, policy.min_calls) == (2, 0.25, 30, 40)
    assert (policy.enabled, policy.counts, policy.probe_lease_s) == (True, True, 20 + PROBE_GRACE_S)
    chain.breaker_enabled = False
    assert (breaker_policy(chain).enabled, breaker_policy(chain).counts) == (False, True)
    settings.RANA_BREAKER_ENABLED = False
    assert (breaker_policy(chain).enabled, breaker_policy().counts) == (False, False)


# -- operators' hands --------------------------------------------------------------------


def test_a_circuit_opened_by_hand_stays_open_until_closed_by_hand(breaker, clock):
    breaker.force(1, "m", "open")
    assert breaker.is_open(STEP)
    clock.now += 10_000
    assert breaker.is_open(STEP)  # no probe, ever
    breaker.record(record("success"))  # a request already in flight answered: still open
    assert breaker.is_open(STEP) and breaker.retry_in(STEP) == ("circuit_open", 30)
    breaker.flush()
    row = breaker.states()[0]
    assert (row["state"], row["reason"], row["manual"], row["cooldown_remaining_s"]) == (
        "open",
        "manual",
        True,
        None,
    )
    breaker.force(1, "m", "close")
    assert not breaker.is_open(STEP)
    assert breaker.states()[0]["state"] == "closed"


def test_closing_by_hand_starts_the_counts_again_and_reset_forgets_the_circuit(breaker):
    breaker.record(record("server_error"))
    breaker.record(record("server_error"))
    breaker.force(1, "m", "close")
    breaker.record(record("server_error"))
    assert not breaker.is_open(STEP)
    assert breaker.states()[0]["consecutive_failures"] == 1
    breaker.force(1, "m", "reset")
    assert breaker.states() == []


def test_an_unknown_action_is_refused(breaker):
    with pytest.raises(ValueError, match="unknown circuit action"):
        breaker.force(1, "m", "toggle")


# -- through the service ---------------------------------------------------------------


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
async def test_a_chain_with_the_breaker_off_calls_an_open_step():
    cache.clear()
    bad = await Provider.objects.acreate(name="bad", kind="simulated")
    good = await Provider.objects.acreate(name="good", kind="simulated")
    for slug, enabled in (("on", True), ("off", False)):
        chain = await FallbackChain.objects.acreate(
            name=slug, slug=slug, default_retries=0, breaker_enabled=enabled
        )
        await ChainStep.objects.acreate(chain=chain, position=0, provider=bad, model="m")
        await ChainStep.objects.acreate(chain=chain, position=1, provider=good, model="m")
    adapter = ScriptedAdapter(FakeClock())
    adapter.script("bad", "m", fail("auth_error", status=401), ok("bad answers again"))
    adapter.script("good", "m", then=ok("good"))
    overrides = {"adapter_for": lambda kind: adapter, "clock": adapter.clock}
    hello = [{"role": "user", "content": "hi"}]
    await complete(chain="on", messages=hello, overrides=overrides)  # opens the circuit
    skipped = await complete(chain="on", messages=hello, overrides=overrides)
    called = await complete(chain="off", messages=hello, overrides=overrides)
    assert [a.outcome for a in skipped.attempts] == ["circuit_open", "success"]
    assert called.text == "bad answers again" and adapter.calls_to("bad") == 2


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
