"""Exact budgets: each request holds its estimated cost before its first attempt and settles
the real cost when it ends, however it ends; on local memory and on Redis."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.db.models import Sum

from providers.engine.plan import ChainPlan
from providers.engine.results import AllProvidersFailed
from providers.engine.types import ChatParams, ImagePart, Message, Price
from providers.models import Completion, FallbackChain
from providers.services import budget
from providers.services.budget import BudgetExceeded, budget_estimate, budget_held, budget_scopes
from providers.services.completions import complete
from providers.services.faults import FaultSpec, StepOutOfRange
from providers.services.ledger import Caller
from providers.services.streaming import stream
from tests.providers import budget_fixtures
from tests.providers.budget_fixtures import (
    ESTIMATE,
    MAX_TOKENS,
    PROMPT,
    REAL_COST,
    SlowAdapter,
    billed_failure,
    overrides,
)
from tests.providers.engine_fakes import chain as plan_of
from tests.providers.engine_fakes import step

pytestmark = pytest.mark.django_db(transaction=True)
backend, priced_chain = budget_fixtures.backend, budget_fixtures.priced_chain

PARAMS = {"max_tokens": MAX_TOKENS}
ONE = Decimal("1")


# -- the estimate ----------------------------------------------------------------------------


def _plan(price: Price | None) -> ChainPlan:
    return plan_of(step(0, "first", price=price), step(1, "second", price=Price(Decimal(100), Decimal(100))))


def test_the_estimate_is_the_prompt_at_four_characters_a_token_plus_max_tokens_at_the_first_price():
    messages = (Message("system", "a" * 10), Message("user", "b" * 31))  # 41 characters: 11 tokens
    estimate = budget_estimate(_plan(Price(Decimal(3), Decimal(15))), messages, ChatParams(max_tokens=100))
    assert estimate == (Decimal(11 + 2 * 4) * 3 + 100 * 15) / 1_000_000  # 4 tokens a message on top


def test_without_max_tokens_the_default_allowance_is_held_and_images_tools_count(settings):
    settings.RANA_BUDGET_DEFAULT_OUTPUT_TOKENS = 1000
    image = ImagePart(url="https://example.com/a.png")
    messages = (Message("user", "abcd", parts=(image,)),)
    tools = ({"type": "function", "function": {"name": "f"}},)  # 46 characters of JSON: 12 tokens
    estimate = budget_estimate(_plan(Price(ONE, ONE)), messages, ChatParams(tools=tools))
    assert estimate == Decimal(1 + 12 + 4 + budget.IMAGE_TOKENS + 1000) / 1_000_000


def test_an_unpriced_first_step_holds_nothing():
    assert budget_estimate(_plan(None), (Message("user", "hi"),), ChatParams()) == 0


# -- holds, directly ---------------------------------------------------------------------------


def _chain_scopes(chain: FallbackChain, daily: Decimal = ONE):
    return budget_scopes(chain_id=chain.pk, chain_daily=daily, chain_monthly=None)


def _held(scopes) -> Decimal:
    return sum(budget_held(scopes=scopes).values(), Decimal(0))


def test_holds_count_against_the_budget_until_settled(backend, priced_chain):
    scopes = _chain_scopes(priced_chain)
    first = budget.budget_reserve(scopes=scopes, token="a" * 32, estimate_usd=Decimal("0.6"))
    second = budget.budget_reserve(scopes=scopes, token="b" * 32, estimate_usd=Decimal("0.6"))  # 0.6 < 1
    assert _held(scopes) == Decimal("1.2")
    with pytest.raises(BudgetExceeded) as info:  # 0 spent + 1.2 held >= 1
        budget.budget_reserve(scopes=scopes, token="c" * 32, estimate_usd=Decimal("0.01"))
    assert info.value.retry_after_s == budget.HELD_RETRY_S and info.value.held == Decimal("1.2")
    assert "held by requests in flight" in str(info.value)
    budget.budget_settle(first, Decimal("0.1"))
    budget.budget_settle(first, Decimal("0.1"))  # once only
    budget.budget_settle(second, Decimal("0.2"))
    assert _held(scopes) == 0
    third = budget.budget_reserve(scopes=scopes, token="d" * 32, estimate_usd=Decimal("0.9"))  # 0.3 spent
    budget.budget_settle(third, Decimal("0.75"))  # 1.05 spent now: the budget is reached
    with pytest.raises(BudgetExceeded) as info:
        budget.budget_check(scopes=scopes)
    assert info.value.spent == Decimal("1.05") and info.value.retry_after_s > budget.HELD_RETRY_S


def test_a_hold_lapses_so_a_dead_process_keeps_nothing(backend, priced_chain, monkeypatch):
    scopes = _chain_scopes(priced_chain)
    budget.budget_reserve(scopes=scopes, token="e" * 32, estimate_usd=Decimal("2"), ttl_s=5)
    with pytest.raises(BudgetExceeded):
        budget.budget_check(scopes=scopes)
    now = budget._now_ms()
    monkeypatch.setattr(budget, "_now_ms", lambda: now + 6_000)  # past the hold's expiry
    assert _held(scopes) == 0
    budget.budget_check(scopes=scopes)  # never settled, no longer held


def test_check_and_reserve_is_one_atomic_step_across_threads(backend, priced_chain):
    """50 threads race for a $1 budget holding $0.09 each: exactly 12 get in (11 x 0.09 < 1)."""
    scopes = _chain_scopes(priced_chain)

    def try_one(i: int) -> bool:
        try:
            budget.budget_reserve(scopes=scopes, token=f"{i:032x}", estimate_usd=REAL_COST)
        except BudgetExceeded:
            return False
        return True

    with ThreadPoolExecutor(16) as pool:
        admitted = sum(pool.map(try_one, range(50)))
    assert admitted == 12 and _held(scopes) == 12 * REAL_COST


# -- (b) 20 in flight, in one process ------------------------------------------------------------


async def _spend_at_twenty_in_flight(caller: Caller, adapter: SlowAdapter) -> None:
    """20 workers send requests until one is refused because the budget is spent (a refusal
    because requests in flight hold the rest is tried again: their holds settle soon)."""

    async def worker() -> None:
        while True:
            try:
                await complete(messages=PROMPT, params=PARAMS, caller=caller, overrides=overrides(adapter))
            except BudgetExceeded as exc:
                if exc.spent >= exc.limit:
                    return
                await asyncio.sleep(0.01)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(20))), 60)


async def _ledger_spend(**filters) -> Decimal:
    total = await Completion.objects.filter(**filters).aaggregate(total=Sum("cost_usd"))
    return total["total"] or Decimal(0)


@pytest.mark.parametrize("scope", ["chain", "key"])
async def test_twenty_in_flight_spend_at_most_the_budget_plus_one_request(backend, priced_chain, scope):
    caller = Caller(source="api", gateway_key_prefix="rk_budget1")
    if scope == "chain":
        await FallbackChain.objects.filter(pk=priced_chain.pk).aupdate(daily_budget_usd=ONE)
    else:
        caller = Caller(source="api", gateway_key_prefix="rk_budget1", key_daily_budget_usd=ONE)
    adapter = SlowAdapter(delay_s=0.1)
    await _spend_at_twenty_in_flight(caller, adapter)
    spent = await _ledger_spend(gateway_key_prefix="rk_budget1")
    # Without holds all 20 in flight passed the check: $1.80 at least. Now: at most one more.
    assert ONE <= spent <= ONE + REAL_COST, spent
    assert adapter.most_in_flight >= 8  # the requests really overlapped (12 at most fit in $1)
    scopes = budget_scopes(
        chain_id=priced_chain.pk,
        chain_daily=ONE if scope == "chain" else None,
        chain_monthly=None,
        key_prefix="rk_budget1",
        key_daily=ONE if scope == "key" else None,
    )
    assert await sync_to_async(_held)(scopes) == 0


# -- (c) every way a request ends releases its hold ------------------------------------------------


@pytest.fixture
def budgeted(priced_chain):
    FallbackChain.objects.filter(pk=priced_chain.pk).update(daily_budget_usd=Decimal("10"))
    return _chain_scopes(priced_chain, Decimal("10"))


async def _held_now(scopes) -> Decimal:
    return await sync_to_async(_held)(scopes)


async def _spent_now(scopes) -> Decimal:
    spent = await sync_to_async(budget.budget_spent)(scopes=scopes)
    return spent["chain daily"]


async def test_a_successful_request_settles_its_real_cost(backend, budgeted):
    adapter = SlowAdapter(delay_s=0)
    await complete(messages=PROMPT, params=PARAMS, overrides=overrides(adapter))
    assert await _held_now(budgeted) == 0 and await _spent_now(budgeted) == REAL_COST


async def test_a_failed_request_settles_what_its_attempts_cost(backend, budgeted):
    adapter = SlowAdapter(delay_s=0)
    adapter.error = billed_failure()
    with pytest.raises(AllProvidersFailed):
        await complete(messages=PROMPT, params=PARAMS, overrides=overrides(adapter))
    assert await _held_now(budgeted) == 0 and await _spent_now(budgeted) == REAL_COST


async def test_a_cancelled_request_releases_its_hold(backend, budgeted):
    adapter = SlowAdapter(delay_s=30)
    task = asyncio.create_task(complete(messages=PROMPT, params=PARAMS, overrides=overrides(adapter)))
    await asyncio.wait_for(adapter.started.wait(), 10)
    assert await _held_now(budgeted) == ESTIMATE
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _held_now(budgeted) == 0 and await _spent_now(budgeted) == 0


async def test_a_request_that_raises_after_its_hold_releases_it(backend, budgeted):
    with pytest.raises(StepOutOfRange):
        await complete(messages=PROMPT, params=PARAMS, faults=[FaultSpec(step=5, failure="server_error")])
    with pytest.raises(StepOutOfRange):
        await stream(messages=PROMPT, params=PARAMS, faults=[FaultSpec(step=5, failure="server_error")])
    assert await _held_now(budgeted) == 0


async def test_a_cache_hit_releases_its_hold_at_no_cost(backend, budgeted):
    await FallbackChain.objects.all().aupdate(cache_ttl_s=60)
    adapter = SlowAdapter(delay_s=0)
    for _ in range(2):
        await complete(messages=PROMPT, params={"max_tokens": MAX_TOKENS}, overrides=overrides(adapter))
    answer = await stream(messages=PROMPT, params=PARAMS, overrides=overrides(adapter))
    assert answer.cache_hit
    async for _event in answer:
        pass
    assert adapter.calls == 1
    assert await _held_now(budgeted) == 0 and await _spent_now(budgeted) == REAL_COST


async def test_a_finished_stream_settles_its_real_cost(backend, budgeted):
    adapter = SlowAdapter(delay_s=0.01)
    answer = await stream(messages=PROMPT, params=PARAMS, overrides=overrides(adapter))
    assert await _held_now(budgeted) == ESTIMATE
    text = "".join([event.text async for event in answer])
    assert text == "ok" and answer.result is not None
    assert await _held_now(budgeted) == 0 and await _spent_now(budgeted) == REAL_COST


async def test_a_stream_closed_early_releases_its_hold(backend, budgeted):
    adapter = SlowAdapter(delay_s=0.01)
    answer = await stream(messages=PROMPT, params=PARAMS, overrides=overrides(adapter))
    events = answer.__aiter__()
    assert (await events.__anext__()).text == "o"
    await answer.aclose()
    assert await _held_now(budgeted) == 0
    assert await Completion.objects.filter(outcome="cancelled").acount() == 1


async def test_a_stream_closed_before_its_first_pull_releases_its_hold(backend, budgeted):
    answer = await stream(messages=PROMPT, params=PARAMS, overrides=overrides(SlowAdapter()))
    assert await _held_now(budgeted) == ESTIMATE
    await answer.aclose()
    assert await _held_now(budgeted) == 0 and await _spent_now(budgeted) == 0


async def test_a_failed_stream_settles_what_it_cost(backend, budgeted):
    adapter = SlowAdapter(delay_s=0)
    adapter.error = billed_failure()
    answer = await stream(messages=PROMPT, params=PARAMS, overrides=overrides(adapter))
    with pytest.raises(AllProvidersFailed):
        async for _event in answer:
            pass
    assert await _held_now(budgeted) == 0 and await _spent_now(budgeted) == REAL_COST


async def test_an_unpriced_chain_holds_nothing_and_is_still_checked(backend, budgeted):
    from providers.models import ModelPrice

    await ModelPrice.objects.all().adelete()
    adapter = SlowAdapter(delay_s=30)
    task = asyncio.create_task(complete(messages=PROMPT, params=PARAMS, overrides=overrides(adapter)))
    await asyncio.wait_for(adapter.started.wait(), 10)
    assert await _held_now(budgeted) == 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_request_cancelled_while_it_reserves_releases_the_hold_once_taken(
    backend, budgeted, monkeypatch
):
    reserving, real_reserve, taken = threading.Event(), budget.budget_reserve, []

    def slow_reserve(**kwargs):
        reserving.set()
        time.sleep(0.3)  # the caller is cancelled meanwhile; the thread goes on and holds
        taken.append(real_reserve(**kwargs))
        return taken[-1]

    monkeypatch.setattr(budget, "budget_reserve", slow_reserve)
    task = asyncio.create_task(complete(messages=PROMPT, params=PARAMS, overrides=overrides(SlowAdapter())))
    await asyncio.to_thread(reserving.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (taken and await _held_now(budgeted) == 0):
        await asyncio.sleep(0.01)
    assert taken and taken[0].amount_nano == int(ESTIMATE * budget.NANO)  # it did hold...
    assert taken[0].settled and await _held_now(budgeted) == 0  # ...and released it once done


def test_one_reservation_holds_on_every_limit_of_key_chain_and_global(backend, priced_chain, settings):
    settings.RANA_GLOBAL_DAILY_BUDGET_USD, settings.RANA_GLOBAL_MONTHLY_BUDGET_USD = "5", "50"
    scopes = budget_scopes(
        chain_id=priced_chain.pk,
        chain_daily=Decimal("2"),
        chain_monthly=Decimal("20"),
        key_prefix="rk_every1",
        key_daily=Decimal("1"),
        key_monthly=Decimal("10"),
    )
    hold = budget.budget_reserve(scopes=scopes, token="f" * 32, estimate_usd=Decimal("0.5"))
    held = budget_held(scopes=scopes)
    assert len(held) == 6 and set(held.values()) == {Decimal("0.5")}
    budget.budget_settle(hold, Decimal("1.25"))
    assert set(budget_held(scopes=scopes).values()) == {0}
    assert set(budget.budget_spent(scopes=scopes).values()) == {Decimal("1.25")}
    with pytest.raises(BudgetExceeded) as info:  # the key's $1 a day is the first one spent
        budget.budget_check(scopes=scopes)
    assert info.value.scope == "key daily"
