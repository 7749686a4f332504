"""The providers service end to end: database chain -> engine -> ledger rows, exactly."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone

from providers.engine.clock import FakeClock
from providers.engine.results import AllProvidersFailed, StreamInterrupted
from providers.engine.types import Usage
from providers.models import Attempt, ChainStep, Completion, FallbackChain, ModelPrice, Provider
from providers.services.budget import BudgetExceeded
from providers.services.chains import ChainNotFound
from providers.services.completions import complete, complete_sync
from providers.services.inputs import InvalidRequest
from providers.services.ledger import Caller
from providers.services.streaming import stream
from providers.signals import completion_recorded, fallback_happened
from tests.providers.engine_fakes import ScriptedAdapter, fail, ok

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "hello"}]
USAGE = Usage(input_tokens=1000, output_tokens=500, cached_tokens=200)


@pytest.fixture(autouse=True)
def clear_cache():
    cache.clear()


@pytest.fixture
def adapter():
    return ScriptedAdapter(FakeClock())


@pytest.fixture
def chain(db):
    first = Provider.objects.create(name="first", kind="simulated")
    second = Provider.objects.create(name="second", kind="simulated")
    chain = FallbackChain.objects.create(name="Main", slug="main", is_default=True, default_retries=0)
    ChainStep.objects.create(chain=chain, position=0, provider=first, model="m1")
    ChainStep.objects.create(chain=chain, position=1, provider=second, model="m2")
    ModelPrice.objects.create(
        provider_kind="simulated",
        model="m1",
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
        cached_input_per_mtok=Decimal("0.3"),
        effective_from=dt.date(2025, 1, 1),
    )
    ModelPrice.objects.create(
        provider_kind="simulated",
        model="m2",
        input_per_mtok=Decimal("1"),
        output_per_mtok=Decimal("2"),
        effective_from=dt.date(2025, 1, 1),
    )
    return chain


def overrides(adapter):
    return {"adapter_for": lambda kind: adapter, "clock": adapter.clock}


async def test_success_records_one_completion_and_its_attempt_with_exact_cost(chain, adapter):
    adapter.script("first", "m1", ok("hi!", usage=USAGE, model="m1"))
    result = await complete(
        chain="main", messages=HELLO, caller=Caller(source="api"), overrides=overrides(adapter)
    )
    # 800 input at $3 + 200 cached at $0.30 + 500 output at $15, per million
    expected = Decimal("0.0024") + Decimal("0.00006") + Decimal("0.0075")
    assert (result.text, result.provider_name, result.fallback_used) == ("hi!", "first", False)
    assert result.cost_usd == expected
    completion = await Completion.objects.aget(id=result.request_id)
    assert completion.outcome == "success" and completion.source == "api"
    assert completion.cost_usd == expected and completion.input_tokens == 1000
    attempt = await Attempt.objects.aget(completion_id=result.request_id)
    assert (attempt.provider_name, attempt.model, attempt.outcome, attempt.cost_usd) == (
        "first",
        "m1",
        "success",
        expected,
    )


async def test_fallback_records_both_attempts_and_fires_signals(chain, adapter):
    adapter.script("first", "m1", fail("server_error", status=503))
    adapter.script("second", "m2", ok("from second", usage=Usage(10, 5)))
    seen = []
    fallback_happened.connect(
        lambda **kw: seen.append(("fallback", kw["from_step"].position)), weak=False, dispatch_uid="t1"
    )
    completion_recorded.connect(
        lambda **kw: seen.append(("recorded", kw["completion"].outcome)), weak=False, dispatch_uid="t2"
    )
    try:
        result = await complete(messages=HELLO, overrides=overrides(adapter))
    finally:
        fallback_happened.disconnect(dispatch_uid="t1")
        completion_recorded.disconnect(dispatch_uid="t2")
    assert result.fallback_used and result.answered_step == 1
    assert seen == [("fallback", 0), ("recorded", "success")]
    rows = [
        (a.step_position, a.outcome, a.http_status)
        async for a in Attempt.objects.order_by("started_at", "id")
    ]
    assert rows == [(0, "server_error", 503), (1, "success", None)]
    completion = await Completion.objects.aget(id=result.request_id)
    assert completion.fallback_used and completion.answered_model == "m2" and completion.attempt_count == 2


async def test_all_failed_raises_one_error_and_records_the_failure(chain, adapter):
    adapter.script("first", "m1", fail("auth_error", status=401, message="bad key ••••abcd"))
    adapter.script("second", "m2", fail("server_error", status=500))
    with pytest.raises(AllProvidersFailed) as info:
        await complete(chain="main", messages=HELLO, overrides=overrides(adapter))
    assert "first/m1" in str(info.value) and "second/m2" in str(info.value)
    completion = await Completion.objects.aget(id=info.value.request_id)
    assert completion.outcome == "failed" and completion.error_class == "server_error"
    assert await Attempt.objects.filter(completion_id=completion.id).acount() == 2


async def test_a_failing_signal_receiver_never_breaks_the_request(chain, adapter):
    def broken(**kwargs):
        raise RuntimeError("receiver bug")

    adapter.script("first", "m1", ok())
    completion_recorded.connect(broken, weak=False, dispatch_uid="broken")
    try:
        result = await complete(messages=HELLO, overrides=overrides(adapter))
    finally:
        completion_recorded.disconnect(dispatch_uid="broken")
    assert result.text == "hello"


async def test_unpriced_model_is_flagged_never_silently_free(chain, adapter):
    await ModelPrice.objects.filter(model="m1").adelete()
    adapter.script("first", "m1", ok(usage=USAGE))
    result = await complete(messages=HELLO, overrides=overrides(adapter))
    assert result.unpriced is True
    completion = await Completion.objects.aget(id=result.request_id)
    attempt = await Attempt.objects.aget(completion_id=result.request_id)
    assert completion.unpriced and attempt.unpriced and attempt.cost_usd is None


async def test_budget_reached_blocks_before_any_provider_and_is_recorded(chain, adapter):
    chain.daily_budget_usd = Decimal("0.50")
    await chain.asave()
    await Completion.objects.acreate(
        created_at=timezone.now(),
        source="api",
        outcome="success",
        chain_id=chain.pk,
        cost_usd=Decimal("0.50"),
    )
    with pytest.raises(BudgetExceeded) as info:
        await complete(chain="main", messages=HELLO, overrides=overrides(adapter))
    assert info.value.scope == "chain daily" and "0.50" in str(info.value)
    assert adapter.calls == []
    blocked = await Completion.objects.aget(id=info.value.request_id)
    assert blocked.outcome == "budget_blocked"


async def test_spend_is_charged_so_the_next_request_is_blocked(chain, adapter):
    chain.daily_budget_usd = Decimal("0.01")
    await chain.asave()
    adapter.script("first", "m1", ok(usage=USAGE))  # costs $0.00996
    await complete(messages=HELLO, overrides=overrides(adapter))
    adapter.script("first", "m1", ok(usage=Usage(1000, 0)))
    await complete(messages=HELLO, overrides=overrides(adapter))  # $0.00996 < $0.01: allowed
    with pytest.raises(BudgetExceeded):
        await complete(messages=HELLO, overrides=overrides(adapter))


async def test_a_key_budget_is_charged_by_the_service_failed_attempts_included(chain, adapter):
    """One budget service for every scope: the key's limits come in the Caller."""
    key = Caller(source="api", gateway_key_prefix="rk_test1", key_daily_budget_usd=Decimal("0.01"))
    adapter.script("first", "m1", fail("server_error", usage=USAGE))  # billed although it failed
    adapter.script("second", "m2", ok(usage=USAGE))  # $0.002: under $0.01 alone, not with m1's $0.00996
    await complete(messages=HELLO, caller=key, overrides=overrides(adapter))
    with pytest.raises(BudgetExceeded) as info:
        await complete(messages=HELLO, caller=key, overrides=overrides(adapter))
    assert info.value.scope == "key daily"
    other_key = Caller(source="api", gateway_key_prefix="rk_other", key_daily_budget_usd=Decimal("0.01"))
    adapter.script("first", "m1", ok(usage=USAGE))
    await complete(messages=HELLO, caller=other_key, overrides=overrides(adapter))  # its own budget


async def test_cache_hit_is_recorded_at_zero_cost_and_replayed_as_a_stream(chain, adapter):
    chain.cache_ttl_s = 60
    await chain.asave()
    adapter.script("first", "m1", ok("cached answer here", usage=USAGE))
    first = await complete(messages=HELLO, overrides=overrides(adapter))
    again = await complete(messages=[{"role": "user", "content": "hello"}], overrides=overrides(adapter))
    assert again.cache_hit and again.text == "cached answer here" and len(adapter.calls) == 1
    hit = await Completion.objects.aget(id=again.request_id)
    assert hit.outcome == "cache_hit" and hit.cost_usd == 0 and first.cost_usd > 0
    streamed = await stream(messages=HELLO, overrides=overrides(adapter))
    text = "".join([event.text async for event in streamed])
    assert text == "cached answer here" and streamed.result.cache_hit
    assert len(adapter.calls) == 1


async def test_invalid_input_names_the_field_and_records_nothing(chain, adapter):
    with pytest.raises(InvalidRequest) as info:
        await complete(messages=[{"role": "wizard", "content": "x"}], overrides=overrides(adapter))
    assert info.value.field == "messages[0].role"
    with pytest.raises(InvalidRequest) as info:
        await complete(messages=HELLO, params={"temperature": 7}, overrides=overrides(adapter))
    assert info.value.field == "temperature"
    assert await Completion.objects.acount() == 0


async def test_unknown_chain_is_a_clear_error(chain, adapter):
    with pytest.raises(ChainNotFound, match="no chain named 'nope'"):
        await complete(chain="nope", messages=HELLO, overrides=overrides(adapter))


async def test_editing_a_chain_takes_effect_on_the_next_request(chain, adapter):
    adapter.script("first", "m1", ok("old"))
    await complete(messages=HELLO, overrides=overrides(adapter))
    await ChainStep.objects.filter(chain=chain, position=0).aupdate(model="m1-new")
    step = await ChainStep.objects.aget(chain=chain, position=0)
    await step.asave()  # the admin saves through the model: that invalidates the plan
    adapter.script("first", "m1-new", ok("new"))
    result = await complete(messages=HELLO, overrides=overrides(adapter))
    assert result.text == "new"


async def test_stream_yields_tokens_and_records_the_completion(chain, adapter):
    adapter.script("first", "m1", ["Hel", "lo", " world"])
    streamed = await stream(chain="main", messages=HELLO, overrides=overrides(adapter))
    chunks = [event.text async for event in streamed if event.text]
    assert chunks == ["Hel", "lo", " world"]
    completion = await Completion.objects.aget(id=streamed.request_id)
    assert completion.stream and completion.outcome == "success"


async def test_stream_falls_back_before_the_first_token(chain, adapter):
    adapter.script("first", "m1", fail("rate_limited", status=429, retry_after_s=5))
    adapter.script("second", "m2", ["ok"])
    streamed = await stream(messages=HELLO, overrides=overrides(adapter))
    assert [e.text async for e in streamed if e.text] == ["ok"]
    assert streamed.result.fallback_used


async def test_stream_cut_after_first_token_is_interrupted_and_billed(chain, adapter):
    adapter.script("first", "m1", ["partial ", fail("connection_error", usage=Usage(100, 40))])
    streamed = await stream(messages=HELLO, overrides=overrides(adapter))
    received = []
    with pytest.raises(StreamInterrupted):
        async for event in streamed:
            received.append(event.text)
    assert received == ["partial "]
    completion = await Completion.objects.aget(id=streamed.request_id)
    assert completion.outcome == "stream_interrupted"
    assert completion.output_tokens == 40 and completion.cost_usd > 0
    assert adapter.calls_to("second") == 0


async def test_closing_a_stream_early_records_it_as_cancelled(chain, adapter):
    adapter.script("first", "m1", ["one ", "two ", "three"])
    streamed = await stream(messages=HELLO, overrides=overrides(adapter))
    async for _event in streamed:
        break
    await streamed.aclose()
    completion = await Completion.objects.aget(id=streamed.request_id)
    assert completion.outcome == "cancelled"
    attempt = await Attempt.objects.aget(completion_id=streamed.request_id)
    assert attempt.outcome == "cancelled" and adapter.streams_closed == 1


def test_complete_sync_works_from_plain_code(chain, adapter):
    adapter.script("first", "m1", ok("sync hi"))
    result = complete_sync(messages=HELLO, overrides=overrides(adapter))
    assert result.text == "sync hi"
    assert Completion.objects.filter(id=result.request_id, outcome="success").exists()
