"""Attempt records, cost, hooks and cancellation of the fallback engine."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from decimal import Decimal

import pytest

from providers.engine.clock import FakeClock
from providers.engine.cost import attempt_cost
from providers.engine.fallback import run
from providers.engine.types import FailureClass as F
from providers.engine.types import Price, Usage
from tests.providers.engine_fakes import (
    MESSAGES,
    PARAMS,
    PRICE,
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


def test_cost_bills_cached_tokens_at_the_cached_rate_exactly():
    usage = Usage(input_tokens=1000, output_tokens=200, cached_tokens=400)
    assert attempt_cost(usage, PRICE) == (Decimal("0.00492"), False)  # (600*3 + 400*0.3 + 200*15) / 1e6


def test_cost_bills_cached_tokens_at_the_input_rate_when_no_cached_price():
    price = Price(Decimal("2.5"), Decimal("10"))
    assert attempt_cost(Usage(1000, 100, 400), price) == (Decimal("0.0035"), False)


def test_a_free_prompt_cache_is_free_not_billed_at_the_input_rate():
    price = Price(Decimal("1"), Decimal("2"), cached_input_per_mtok=Decimal("0"))
    assert attempt_cost(Usage(1_000_000, 0, 1_000_000), price) == (Decimal("0"), False)


def test_unpriced_usage_is_flagged_and_no_usage_costs_nothing():
    assert attempt_cost(Usage(10, 10), None) == (None, True)
    assert attempt_cost(None, PRICE) == (None, False)
    assert attempt_cost(None, None) == (None, False)


async def test_records_carry_timing_status_error_and_cost():
    clock = FakeClock()
    fake = ScriptedAdapter(clock)
    fake.script(
        "a",
        "m",
        Takes(1.5, fail(F.SERVER_ERROR, "boom", status=502, usage=Usage(100, 0), injected=True)),
        Takes(0.25, ok("done", usage=Usage(1000, 200, 400))),
    )
    plan = chain(step(0, "a", retries=1, price=PRICE, backoff_base_s=0))
    result = await run(plan, MESSAGES, PARAMS, make_deps(fake))
    failed, answered = result.attempts
    assert (failed.provider_id, failed.provider_name, failed.provider_kind, failed.model) == (
        1,
        "a",
        "fake",
        "m",
    )
    assert failed.started_at == clock.start and failed.started_at.utcoffset() == timedelta(0)
    assert failed.latency_ms == 1500 and failed.http_status == 502
    assert failed.error_message == "boom" and failed.injected
    assert failed.cost_usd == Decimal("0.0003")  # a failed attempt that reported usage is billed
    assert answered.started_at == clock.start + timedelta(seconds=1.5) and answered.latency_ms == 250
    assert answered.cost_usd == Decimal("0.00492") and not answered.injected
    assert result.usage == Usage(1100, 200, 400)
    assert result.cost_usd == Decimal("0.00522") and not result.unpriced


async def test_result_is_flagged_unpriced_when_an_attempt_with_usage_had_no_price():
    fake = ScriptedAdapter(FakeClock())
    fake.script("a", "m", fail(F.TIMEOUT, usage=Usage(10, 0)))
    fake.script("b", "m", ok(usage=Usage(10, 5)))
    result = await run(chain(step(0, "a"), step(1, "b", price=PRICE)), MESSAGES, PARAMS, make_deps(fake))
    assert result.unpriced and result.cost_usd == Decimal("0.000105")
    assert result.attempts[0].cost_usd is None and result.attempts[0].unpriced


async def test_hooks_see_each_attempt_as_it_ends_before_any_backoff():
    clock = FakeClock()
    fake = ScriptedAdapter(clock)
    fake.script("a", "m", fail(F.SERVER_ERROR), fail(F.SERVER_ERROR))
    fake.script("b", "m", ok())
    seen: list[tuple[str, int, float]] = []
    outcomes_told: list[tuple[int, str]] = []
    fallbacks = []
    deps = make_deps(
        fake,
        on_attempt=lambda a: seen.append((a.outcome, a.step_position, clock.elapsed)),
        on_outcome=lambda s, outcome: outcomes_told.append((s.position, outcome)),
        on_fallback=lambda a, b, error: fallbacks.append((a.position, b.position, error.failure_class)),
    )
    await run(chain(step(0, "a", retries=1), step(1, "b")), MESSAGES, PARAMS, deps)
    assert seen[0] == ("server_error", 0, 0)  # recorded before the backoff sleep
    assert [s[:2] for s in seen] == [("server_error", 0), ("server_error", 0), ("success", 1)]
    assert outcomes_told == [(0, "server_error"), (0, "server_error"), (1, "success")]
    assert fallbacks == [(0, 1, F.SERVER_ERROR)]


async def test_failing_hooks_are_logged_and_never_break_the_request(caplog):
    fake = ScriptedAdapter(FakeClock())
    fake.script("a", "m", fail(F.AUTH_ERROR, status=401))
    fake.script("b", "m", ok("still answered"))

    def explode(*args):
        raise RuntimeError("hook bug")

    deps = make_deps(
        fake, on_attempt=explode, on_fallback=explode, on_outcome=explode, is_circuit_open=explode
    )
    with caplog.at_level(logging.ERROR, logger="rana.engine"):
        result = await run(chain(step(0, "a"), step(1, "b")), MESSAGES, PARAMS, deps)
    assert result.response.text == "still answered"
    assert outcomes(result.attempts) == [(0, 0, "auth_error"), (1, 0, "success")]
    failed_hooks = {r.getMessage() for r in caplog.records}
    assert {
        f"engine hook {name} failed" for name in ("on_attempt", "on_fallback", "on_outcome")
    } <= failed_hooks


async def test_cancelling_the_task_records_cancelled_and_propagates_cancellation():
    fake = ScriptedAdapter()
    fake.script("a", "m", Hang(30))
    recorded, told = [], []
    deps = make_deps(fake, on_attempt=recorded.append, on_outcome=lambda s, o: told.append(o))
    task = asyncio.create_task(run(chain(step(0, "a", retries=2), step(1, "b")), MESSAGES, PARAMS, deps))
    while not fake.calls:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcomes(recorded) == [(0, 0, "cancelled")]
    assert told == [] and fake.calls == [("a", "m")]  # no breaker penalty, no fallback
