"""The walk down a chain: retry, fall back or stop, per failure class (docs/architecture.md)."""

from __future__ import annotations

import pytest

from providers.engine.clock import FakeClock
from providers.engine.fallback import run
from providers.engine.results import AllProvidersFailed
from providers.engine.types import FailureClass as F
from tests.providers.engine_fakes import (
    MESSAGES,
    PARAMS,
    ScriptedAdapter,
    Takes,
    chain,
    fail,
    make_deps,
    ok,
    outcomes,
    step,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> ScriptedAdapter:
    return ScriptedAdapter(clock)


async def test_retries_a_server_error_then_succeeds_on_the_same_provider(fake, clock):
    fake.script("a", "m", fail(F.SERVER_ERROR, status=503), ok("fine"))
    result = await run(chain(step(0, "a", retries=2)), MESSAGES, PARAMS, make_deps(fake))
    assert result.response.text == "fine"
    assert outcomes(result.attempts) == [(0, 0, "server_error"), (0, 1, "success")]
    assert result.answered_step == 0 and not result.fallback_used
    assert len(clock.sleeps) == 1


async def test_exhausts_retries_then_falls_back_to_the_next_step(fake, clock):
    fake.script("a", "m", then=fail(F.CONNECTION_ERROR))
    fake.script("b", "m", ok("from b"))
    plan = chain(step(0, "a", retries=2), step(1, "b"))
    result = await run(plan, MESSAGES, PARAMS, make_deps(fake))
    assert result.response.text == "from b"
    assert outcomes(result.attempts) == [
        (0, 0, "connection_error"),
        (0, 1, "connection_error"),
        (0, 2, "connection_error"),
        (1, 0, "success"),
    ]
    assert result.answered_step == 1 and result.fallback_used
    assert len(clock.sleeps) == 2  # between retries only, none before the fallback


async def test_falls_back_after_429_at_once_without_sleeping(fake, clock):
    fake.script("a", "m", fail(F.RATE_LIMITED, status=429, retry_after_s=5))
    fake.script("b", "m", ok())
    plan = chain(step(0, "a", retries=3), step(1, "b"))
    result = await run(plan, MESSAGES, PARAMS, make_deps(fake))
    assert outcomes(result.attempts) == [(0, 0, "rate_limited"), (1, 0, "success")]
    assert result.attempts[0].retry_after_s == 5 and result.attempts[0].http_status == 429
    assert clock.sleeps == []


async def test_429_on_the_last_step_waits_retry_after_then_succeeds(fake, clock):
    fake.script("a", "m", fail(F.RATE_LIMITED, status=429, retry_after_s=2.5), ok("later"))
    plan = chain(step(0, "a", retries=1), deadline_s=30, max_retry_after_s=10)
    result = await run(plan, MESSAGES, PARAMS, make_deps(fake))
    assert result.response.text == "later"
    assert clock.sleeps == [2.5]


async def test_429_without_retry_after_on_the_last_step_waits_a_jittered_backoff(fake, clock):
    fake.script("a", "m", fail(F.RATE_LIMITED, status=429), ok())
    plan = chain(step(0, "a", retries=1, backoff_base_s=2.0), backoff_cap_s=8)
    await run(plan, MESSAGES, PARAMS, make_deps(fake))
    assert len(clock.sleeps) == 1 and 0 <= clock.sleeps[0] <= 2.0


@pytest.mark.parametrize(
    ("retry_after", "plan_kwargs"),
    [
        (120.0, {"max_retry_after_s": 30, "deadline_s": 600}),
        (20.0, {"max_retry_after_s": 60, "deadline_s": 10}),
    ],
    ids=["bigger-than-cap", "bigger-than-deadline"],
)
async def test_oversized_retry_after_fails_fast_and_passes_it_on(fake, clock, retry_after, plan_kwargs):
    fake.script("a", "m", fail(F.RATE_LIMITED, status=429, retry_after_s=retry_after))
    plan = chain(step(0, "a", retries=3), **plan_kwargs)
    with pytest.raises(AllProvidersFailed) as caught:
        await run(plan, MESSAGES, PARAMS, make_deps(fake))
    assert caught.value.failure_class is F.RATE_LIMITED
    assert caught.value.retry_after_s == retry_after
    assert not caught.value.deadline_exceeded
    assert fake.calls == [("a", "m")] and clock.sleeps == []


async def test_429_with_no_retry_left_ends_the_walk_with_retry_after(fake):
    fake.script("a", "m", fail(F.SERVER_ERROR))
    fake.script("b", "m", fail(F.RATE_LIMITED, status=429, retry_after_s=7))
    with pytest.raises(AllProvidersFailed) as caught:
        await run(chain(step(0, "a"), step(1, "b")), MESSAGES, PARAMS, make_deps(fake))
    assert caught.value.failure_class is F.RATE_LIMITED and caught.value.retry_after_s == 7


async def test_invalid_request_stops_at_once_without_fallback(fake, clock):
    fake.script("a", "m", fail(F.INVALID_REQUEST, "max_tokens too large", status=400))
    plan = chain(step(0, "a", retries=3), step(1, "b"))
    with pytest.raises(AllProvidersFailed) as caught:
        await run(plan, MESSAGES, PARAMS, make_deps(fake))
    assert caught.value.failure_class is F.INVALID_REQUEST
    assert outcomes(caught.value.attempts) == [(0, 0, "invalid_request")]
    assert "max_tokens too large" in str(caught.value)
    assert fake.calls == [("a", "m")] and clock.sleeps == []


@pytest.mark.parametrize("failure", [F.AUTH_ERROR, F.QUOTA_EXHAUSTED])
async def test_auth_and_quota_errors_fall_back_at_once_without_retry(fake, clock, failure):
    fake.script("a", "m", fail(failure, status=401 if failure is F.AUTH_ERROR else 429))
    fake.script("b", "m", ok())
    result = await run(chain(step(0, "a", retries=3), step(1, "b")), MESSAGES, PARAMS, make_deps(fake))
    assert outcomes(result.attempts) == [(0, 0, failure.value), (1, 0, "success")]
    assert clock.sleeps == []


async def test_content_filter_stops_by_default(fake):
    fake.script("a", "m", fail(F.CONTENT_FILTER))
    with pytest.raises(AllProvidersFailed) as caught:
        await run(chain(step(0, "a", retries=2), step(1, "b")), MESSAGES, PARAMS, make_deps(fake))
    assert caught.value.failure_class is F.CONTENT_FILTER and fake.calls == [("a", "m")]


async def test_content_filter_falls_back_when_the_chain_allows_it(fake):
    fake.script("a", "m", fail(F.CONTENT_FILTER))
    fake.script("b", "m", ok())
    plan = chain(step(0, "a", retries=2), step(1, "b"), content_filter_fallback=True)
    result = await run(plan, MESSAGES, PARAMS, make_deps(fake))
    assert outcomes(result.attempts) == [(0, 0, "content_filter"), (1, 0, "success")]


async def test_context_length_skips_later_steps_known_to_be_smaller(fake, clock):
    fake.script("a", "m", fail(F.CONTEXT_LENGTH))
    fake.script("d", "m", ok("big enough"))
    plan = chain(
        step(0, "a", retries=2, context_window=32_000),
        step(1, "b", context_window=8_000),  # known smaller: skipped, never called
        step(2, "c", context_window=16_000),
        step(3, "d"),  # unknown window: tried
    )
    result = await run(plan, MESSAGES, PARAMS, make_deps(fake))
    assert outcomes(result.attempts) == [(0, 0, "context_length"), (3, 0, "success")]
    assert fake.calls == [("a", "m"), ("d", "m")] and clock.sleeps == []


async def test_all_failing_raises_one_error_listing_every_attempt(fake):
    fake.script("a", "m", then=fail(F.SERVER_ERROR, status=502))
    fake.script("b", "m", then=fail(F.TIMEOUT))
    plan = chain(step(0, "a", retries=1), step(1, "b", retries=1))
    with pytest.raises(AllProvidersFailed) as caught:
        await run(plan, MESSAGES, PARAMS, make_deps(fake))
    error = caught.value
    assert outcomes(error.attempts) == [
        (0, 0, "server_error"),
        (0, 1, "server_error"),
        (1, 0, "timeout"),
        (1, 1, "timeout"),
    ]
    assert error.failure_class is F.TIMEOUT and not error.deadline_exceeded and error.retry_after_s is None
    assert "step 1 a/m try 2: server_error (HTTP 502)" in str(error)


async def test_circuit_open_steps_are_skipped_and_recorded_without_a_call(fake, clock):
    fake.script("b", "m", ok())
    plan = chain(step(0, "a", retries=2), step(1, "b"))
    deps = make_deps(fake, is_circuit_open=lambda s: s.provider.name == "a")
    result = await run(plan, MESSAGES, PARAMS, deps)
    assert outcomes(result.attempts) == [(0, 0, "circuit_open"), (1, 0, "success")]
    assert fake.calls == [("b", "m")]
    assert result.attempts[0].latency_ms == 0 and result.fallback_used


async def test_every_step_circuit_open_fails_as_circuit_open_with_no_call(fake):
    deps = make_deps(fake, is_circuit_open=lambda s: True)
    with pytest.raises(AllProvidersFailed) as caught:
        await run(chain(step(0, "a"), step(1, "b")), MESSAGES, PARAMS, deps)
    assert caught.value.failure_class is F.CIRCUIT_OPEN and fake.calls == []
    assert outcomes(caught.value.attempts) == [(0, 0, "circuit_open"), (1, 0, "circuit_open")]


async def test_a_trailing_circuit_open_skip_does_not_hide_the_real_failure(fake):
    fake.script("a", "m", fail(F.SERVER_ERROR))
    deps = make_deps(fake, is_circuit_open=lambda s: s.provider.name == "b")
    with pytest.raises(AllProvidersFailed) as caught:
        await run(chain(step(0, "a"), step(1, "b")), MESSAGES, PARAMS, deps)
    assert caught.value.failure_class is F.SERVER_ERROR


async def test_an_empty_chain_fails_without_any_attempt(fake):
    with pytest.raises(AllProvidersFailed) as caught:
        await run(chain(), MESSAGES, PARAMS, make_deps(fake))
    assert caught.value.attempts == [] and "no step could be tried" in str(caught.value)


async def test_an_adapter_that_breaks_its_contract_counts_as_a_bad_response(fake):
    fake.script("a", "m", KeyError("choices"), ok("second try"))
    result = await run(chain(step(0, "a", retries=1)), MESSAGES, PARAMS, make_deps(fake))
    assert outcomes(result.attempts) == [(0, 0, "bad_response"), (0, 1, "success")]
    assert result.attempts[0].error_message == "adapter error: KeyError"


async def test_requests_carry_the_step_timeouts_capped_by_the_deadline(fake, clock):
    fake.script("a", "m", Takes(7, fail(F.SERVER_ERROR)), ok())
    plan = chain(
        step(0, "a", retries=1, timeout_s=20, backoff_base_s=0, first_token_timeout_s=4),
        deadline_s=10,
        connect_timeout_s=5,
    )
    await run(plan, MESSAGES, PARAMS, make_deps(fake))
    first, second = (r.timeouts for r in fake.requests)
    assert (first.connect_s, first.read_s, first.first_token_s) == (5, 10, 4)
    assert (second.connect_s, second.read_s, second.first_token_s) == (3, 3, 3)
    assert fake.requests[0].messages == MESSAGES and fake.requests[0].params == PARAMS
