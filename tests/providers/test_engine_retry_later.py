"""When the walk can only succeed later: every attempt rate-limited or behind an open circuit."""

from __future__ import annotations

import pytest

from providers.engine.clock import FakeClock
from providers.engine.fallback import run
from providers.engine.results import AllProvidersFailed, RetryLater
from providers.engine.types import FailureClass as F
from tests.providers.engine_fakes import (
    MESSAGES,
    PARAMS,
    ScriptedAdapter,
    Takes,
    chain,
    fail,
    make_deps,
    step,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> ScriptedAdapter:
    return ScriptedAdapter(clock)


async def failure(plan, deps) -> AllProvidersFailed:
    with pytest.raises(AllProvidersFailed) as caught:
        await run(plan, MESSAGES, PARAMS, deps)
    return caught.value


def circuits(**open_for: tuple[str, float]):
    """is_circuit_open and circuit_retry_in hooks for circuits open by provider name."""
    return {
        "is_circuit_open": lambda s: s.provider.name in open_for,
        "circuit_retry_in": lambda s: open_for.get(s.provider.name),
    }


@pytest.mark.parametrize("waits", [(7, 3), (3, 7)])
async def test_every_step_rate_limited_gives_the_soonest_retry_after(fake, waits):
    fake.script("a", "m", fail(F.RATE_LIMITED, status=429, retry_after_s=waits[0]))
    fake.script("b", "m", fail(F.RATE_LIMITED, status=429, retry_after_s=waits[1]))
    error = await failure(chain(step(0, "a"), step(1, "b")), make_deps(fake))
    assert error.retry_later == RetryLater("rate_limited", 3) and error.retry_after_s == 3


async def test_a_step_last_tried_after_a_wait_counts_from_its_last_attempt(fake, clock):
    fake.script("a", "m", fail(F.RATE_LIMITED, retry_after_s=20))  # ready again while b is waited for
    fake.script("b", "m", *[fail(F.RATE_LIMITED, retry_after_s=25)] * 2)
    error = await failure(chain(step(0, "a"), step(1, "b", retries=1)), make_deps(fake))
    assert clock.sleeps == [25] and error.retry_later == RetryLater("rate_limited", 0)
    assert error.retry_later.whole_seconds == 1


async def test_a_rate_limit_without_retry_after_means_now(fake):
    fake.script("a", "m", fail(F.RATE_LIMITED))
    error = await failure(chain(step(0, "a")), make_deps(fake))
    assert error.retry_later == RetryLater("rate_limited", 0)


async def test_every_circuit_open_gives_the_soonest_half_open_and_says_why(fake):
    hooks = circuits(a=("circuit_open", 299.5), b=("circuit_open", 29.2))
    error = await failure(chain(step(0, "a"), step(1, "b")), make_deps(fake, **hooks))
    assert error.retry_later == RetryLater("circuit_open", 29.2) and error.retry_later.whole_seconds == 30
    assert [(a.error_message, a.retry_after_s) for a in error.attempts] == [
        ("circuit open; half-open in 300 s", 299.5),
        ("circuit open; half-open in 30 s", 29.2),
    ]
    assert error.failure_class is F.CIRCUIT_OPEN and fake.calls == []


async def test_a_rate_limited_circuit_makes_it_a_rate_limit_at_the_soonest_time(fake):
    fake.script("c", "m", fail(F.RATE_LIMITED, retry_after_s=20))
    hooks = circuits(a=("rate_limited", 12), b=("circuit_open", 5))
    error = await failure(chain(step(0, "a"), step(1, "b"), step(2, "c")), make_deps(fake, **hooks))
    assert error.retry_later == RetryLater("rate_limited", 5)
    assert error.attempts[0].error_message == "circuit open after rate limiting; retry in 12 s"


async def test_any_other_failure_leaves_it_an_ordinary_failure(fake):
    fake.script("a", "m", fail(F.RATE_LIMITED, retry_after_s=7))
    fake.script("b", "m", fail(F.SERVER_ERROR))
    error = await failure(chain(step(0, "a"), step(1, "b")), make_deps(fake))
    assert error.retry_later is None and error.retry_after_s is None


async def test_a_circuit_the_breaker_cannot_time_leaves_it_an_ordinary_failure(fake):
    deps = make_deps(fake, is_circuit_open=lambda s: True, circuit_retry_in=lambda s: None)
    error = await failure(chain(step(0, "a")), deps)
    assert error.retry_later is None and error.attempts[0].error_message == "circuit open"
    error = await failure(chain(step(0, "a")), make_deps(fake, is_circuit_open=lambda s: True))
    assert error.retry_later is None and error.attempts[0].retry_after_s is None


async def test_a_retry_after_past_the_deadline_is_passed_on(fake):
    fake.script("a", "m", fail(F.RATE_LIMITED, retry_after_s=5))
    error = await failure(chain(step(0, "a", retries=1), deadline_s=4), make_deps(fake))
    assert error.retry_later == RetryLater("rate_limited", 5) and not error.deadline_exceeded


async def test_a_passed_deadline_stays_a_deadline(fake):
    fake.script("a", "m", Takes(5, fail(F.RATE_LIMITED, retry_after_s=1)))  # cut at the 4 s deadline
    error = await failure(chain(step(0, "a"), step(1, "b"), deadline_s=4), make_deps(fake))
    assert error.deadline_exceeded and error.retry_later is None
