"""Hard limits: attempts, the step timeout, the deadline, and full-jitter backoff."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from providers.engine.backoff import backoff_ceiling, backoff_delay
from providers.engine.clock import SYSTEM_CLOCK, FakeClock
from providers.engine.fallback import run
from providers.engine.plan import worst_case
from providers.engine.results import AllProvidersFailed
from providers.engine.types import FailureClass as F
from tests.providers.engine_fakes import (
    MESSAGES,
    PARAMS,
    Hang,
    ScriptedAdapter,
    Takes,
    chain,
    fail,
    make_deps,
    ok,
    outcomes,
    step,
)

CONFIGS = {
    "one-step-no-retry": ([0], {}),
    "two-steps": ([2, 1], {}),
    "capped-by-max-attempts": ([3, 3, 3], {"max_attempts": 6}),
    "mixed-under-cap": ([1, 0, 2], {"max_attempts": 10}),
    "cap-inside-a-step": ([4], {"max_attempts": 3}),
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
async def test_all_failing_makes_exactly_the_worst_case_number_of_calls(config):
    retries, plan_kwargs = config
    clock = FakeClock()
    fake = ScriptedAdapter(clock)
    steps = [step(i, f"p{i}", retries=n, backoff_base_s=0.5) for i, n in enumerate(retries)]
    for s in steps:
        fake.script(s.provider.name, "m", then=fail(F.SERVER_ERROR, status=500))
    plan = chain(*steps, deadline_s=600, **plan_kwargs)
    with pytest.raises(AllProvidersFailed) as caught:
        await run(plan, MESSAGES, PARAMS, make_deps(fake))
    assert len(fake.calls) == worst_case(plan).upstream_calls
    assert len(caught.value.attempts) == len(fake.calls)
    assert caught.value.failure_class is F.SERVER_ERROR and not caught.value.deadline_exceeded


async def test_max_attempts_caps_calls_across_steps():
    fake = ScriptedAdapter(FakeClock())
    steps = [step(i, f"p{i}", retries=3) for i in range(3)]
    for s in steps:
        fake.script(s.provider.name, "m", then=fail(F.TIMEOUT))
    with pytest.raises(AllProvidersFailed) as caught:
        await run(chain(*steps, max_attempts=5), MESSAGES, PARAMS, make_deps(fake))
    assert outcomes(caught.value.attempts) == [
        (0, 0, "timeout"),
        (0, 1, "timeout"),
        (0, 2, "timeout"),
        (0, 3, "timeout"),
        (1, 0, "timeout"),
    ]


async def test_deadline_bounds_the_whole_walk_on_the_fake_clock():
    clock = FakeClock()
    fake = ScriptedAdapter(clock)
    fake.script("a", "m", then=Takes(4, fail(F.TIMEOUT)))
    fake.script("b", "m", then=Takes(4, fail(F.TIMEOUT)))
    plan = chain(
        step(0, "a", retries=5, timeout_s=4, backoff_base_s=0),
        step(1, "b", retries=5, timeout_s=4, backoff_base_s=0),
        deadline_s=10,
        max_attempts=20,
    )
    with pytest.raises(AllProvidersFailed) as caught:
        await run(plan, MESSAGES, PARAMS, make_deps(fake))
    assert caught.value.deadline_exceeded and caught.value.failure_class is F.TIMEOUT
    assert clock.elapsed <= 10
    assert fake.calls == [("a", "m")] * 3  # 4 s + 4 s + the 2 s that were left
    assert fake.requests[-1].timeouts.read_s == pytest.approx(2)


async def test_a_backoff_that_would_outlast_the_deadline_is_not_slept():
    clock = FakeClock()
    fake = ScriptedAdapter(clock)
    fake.script("a", "m", Takes(9, fail(F.SERVER_ERROR, retry_after_s=5)))
    plan = chain(step(0, "a", retries=3, timeout_s=9), deadline_s=10, max_retry_after_s=30)
    with pytest.raises(AllProvidersFailed) as caught:
        await run(plan, MESSAGES, PARAMS, make_deps(fake))
    assert caught.value.deadline_exceeded and caught.value.failure_class is F.TIMEOUT
    assert clock.sleeps == [] and clock.elapsed == 9


async def test_a_backoff_that_would_outlast_the_deadline_moves_to_the_next_step():
    clock = FakeClock()
    fake = ScriptedAdapter(clock)
    fake.script("a", "m", Takes(9, fail(F.SERVER_ERROR, retry_after_s=5)))
    fake.script("b", "m", ok("quick"))
    plan = chain(step(0, "a", retries=3, timeout_s=9), step(1, "b"), deadline_s=10)
    result = await run(plan, MESSAGES, PARAMS, make_deps(fake))
    assert outcomes(result.attempts) == [(0, 0, "server_error"), (1, 0, "success")]
    assert clock.sleeps == []


async def test_the_deadline_holds_even_when_an_adapter_ignores_its_timeouts():
    fake = ScriptedAdapter()
    fake.script("a", "m", then=Hang(30))
    plan = chain(step(0, "a", retries=5, timeout_s=30, backoff_base_s=0), deadline_s=0.05)
    deps = make_deps(fake, clock=SYSTEM_CLOCK)
    started = time.monotonic()
    with pytest.raises(AllProvidersFailed) as caught:
        await run(plan, MESSAGES, PARAMS, deps)
    assert time.monotonic() - started < 1.0
    assert caught.value.deadline_exceeded
    assert outcomes(caught.value.attempts) == [(0, 0, "timeout")]
    assert caught.value.attempts[0].latency_ms >= 40


async def test_the_step_timeout_bounds_the_whole_attempt_and_the_next_step_answers():
    fake = ScriptedAdapter(FakeClock())
    fake.script("a", "m", Hang(30))  # like a drip of bytes: no read timeout ever fires
    fake.script("b", "m", ok("from b"))
    plan = chain(step(0, "a", timeout_s=0.05), step(1, "b"), deadline_s=60)
    started = time.monotonic()
    result = await run(plan, MESSAGES, PARAMS, make_deps(fake))
    assert time.monotonic() - started < 1.0
    assert outcomes(result.attempts) == [(0, 0, "timeout"), (1, 0, "success")]
    assert result.attempts[0].error_message == "no complete answer within the step's 0.05 s timeout"
    assert result.response.text == "from b"


async def test_a_step_timeout_is_retried_like_any_timeout():
    clock = FakeClock()
    fake = ScriptedAdapter(clock)
    fake.script("a", "m", Hang(30), ok("second try"))
    plan = chain(step(0, "a", retries=1, timeout_s=0.05, backoff_base_s=0.5), deadline_s=60)
    result = await run(plan, MESSAGES, PARAMS, make_deps(fake))
    assert outcomes(result.attempts) == [(0, 0, "timeout"), (0, 1, "success")]
    assert len(clock.sleeps) == 1  # one backoff before the retry


async def test_an_attempt_past_what_the_deadline_leaves_says_the_deadline_cut_it():
    clock = FakeClock()
    fake = ScriptedAdapter(clock)
    fake.script("a", "m", Takes(9.95, fail(F.SERVER_ERROR)), Hang(30))
    plan = chain(step(0, "a", retries=1, timeout_s=20, backoff_base_s=0), deadline_s=10)
    with pytest.raises(AllProvidersFailed) as caught:
        await run(plan, MESSAGES, PARAMS, make_deps(fake))
    assert outcomes(caught.value.attempts) == [(0, 0, "server_error"), (0, 1, "timeout")]
    assert (
        caught.value.attempts[1].error_message
        == "no answer within the 0.05 s left before the chain's deadline"
    )
    assert fake.requests[1].timeouts.read_s == pytest.approx(0.05)


def test_worst_case_counts_each_attempt_at_its_own_bound():
    a = step(0, "a", retries=1, timeout_s=2, backoff_base_s=0.5, first_token_timeout_s=1, idle_timeout_s=3)
    b = step(1, "b", timeout_s=4, first_token_timeout_s=2, idle_timeout_s=5)
    plan = chain(a, b, connect_timeout_s=5, max_retry_after_s=1, deadline_s=60)
    case = worst_case(plan)
    assert case.upstream_calls == 3
    assert case.seconds == 2 + (0.5 + 2) + 4 + 1  # the connect is inside each step timeout
    assert case.first_token_s == 1 + (0.5 + 1) + 2 + 1
    assert case.idle_s == 5
    capped = worst_case(chain(a, b, max_retry_after_s=1, deadline_s=4))
    assert (capped.seconds, capped.first_token_s, capped.idle_s) == (4, 4, 4)


async def test_retries_sleep_full_jitter_drawn_from_the_injected_rng():
    clock = FakeClock()
    fake = ScriptedAdapter(clock)
    fake.script("a", "m", then=fail(F.SERVER_ERROR))
    plan = chain(
        step(0, "a", retries=5, backoff_base_s=1.5), backoff_cap_s=4, max_attempts=10, deadline_s=600
    )
    with pytest.raises(AllProvidersFailed):
        await run(plan, MESSAGES, PARAMS, make_deps(fake, seed=42))
    replay = random.Random(42)
    expected = [replay.uniform(0, min(4, 1.5 * 2**n)) for n in range(5)]
    assert clock.sleeps == pytest.approx(expected)


async def test_a_longer_retry_after_wins_over_the_jitter():
    clock = FakeClock()
    fake = ScriptedAdapter(clock)
    fake.script("a", "m", fail(F.SERVER_ERROR, status=503, retry_after_s=6), ok())
    plan = chain(step(0, "a", retries=1, backoff_base_s=1), backoff_cap_s=2)
    await run(plan, MESSAGES, PARAMS, make_deps(fake))
    assert clock.sleeps == [6]


async def test_a_retry_after_beyond_the_cap_is_not_waited_for_on_a_server_error():
    clock = FakeClock()
    fake = ScriptedAdapter(clock)
    fake.script("a", "m", fail(F.SERVER_ERROR, status=503, retry_after_s=300))
    fake.script("b", "m", ok())
    plan = chain(step(0, "a", retries=2), step(1, "b"), max_retry_after_s=30)
    result = await run(plan, MESSAGES, PARAMS, make_deps(fake))
    assert outcomes(result.attempts) == [(0, 0, "server_error"), (1, 0, "success")]
    assert clock.sleeps == []


@pytest.mark.parametrize("retry_index", range(8))
def test_backoff_draws_stay_within_the_full_jitter_window(retry_index):
    rng = random.Random(retry_index)
    ceiling = backoff_ceiling(retry_index, base_s=0.5, cap_s=8)
    assert ceiling == min(8, 0.5 * 2**retry_index)
    draws = [backoff_delay(retry_index, base_s=0.5, cap_s=8, rng=rng) for _ in range(500)]
    assert all(0 <= d <= ceiling for d in draws)
    assert max(draws) > ceiling * 0.9 and min(draws) < ceiling * 0.1  # the whole window, not a slice


def test_fake_clock_sleep_advances_time_and_records_it():
    clock = FakeClock()
    before, wall = clock.monotonic(), clock.now()
    asyncio.run(clock.sleep(2.5))
    assert clock.sleeps == [2.5] and clock.monotonic() - before == 2.5
    assert (clock.now() - wall).total_seconds() == 2.5 and clock.now().tzinfo is not None
