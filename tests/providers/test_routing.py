"""Chain strategies: the order each one gives the steps, why, and that the walk follows it."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import Counter
from decimal import Decimal

import pytest
from django.utils import timezone

from providers.engine.clock import FakeClock
from providers.engine.types import Price, Usage
from providers.models import Attempt, ChainStep, Completion, FallbackChain, ModelPrice, Provider
from providers.services.completions import complete
from providers.services.health import ProviderHealth, health_forget
from providers.services.routing import plan_route
from tests.providers.engine_fakes import ScriptedAdapter, chain, ok, step

HELLO = [{"role": "user", "content": "hello"}]
USAGE = Usage(input_tokens=1000, output_tokens=500)


def health(provider_id: int, *, score: int = 100, p50: float | None = None, p95: float | None = None):
    return ProviderHealth(
        provider_id=provider_id,
        provider_name=f"p{provider_id}",
        model="m",
        score=score,
        reasons=(),
        calls=10,
        success_rate=1.0,
        p50_latency_ms=p50,
        p95_latency_ms=p95 if p95 is not None else p50,
        p95_ttft_ms=None,
        last_success_at=None,
        last_error_at=None,
        last_error="",
    )


def order_of(plan) -> list[str]:
    return [s.provider.name for s in plan.steps]


def route(strategy: str, *steps, usage=USAGE, figures=(), rng=None):
    plan = chain(*steps, strategy=strategy)
    by_step = {(h.provider_id, h.model): h for h in figures}
    return plan_route(plan, usage=usage, health=by_step, rng=rng)


def test_ordered_keeps_the_configured_order():
    plan, why = route("ordered", step(0, "a"), step(1, "b"))
    assert order_of(plan) == ["a", "b"]
    assert why.as_dict() == {
        "strategy": "ordered",
        "order": [{"step": 0, "provider": "a", "model": "m"}, {"step": 1, "provider": "b", "model": "m"}],
        "why": "in the configured order",
    }


def test_cheapest_first_prices_the_request_at_each_step_and_keeps_unpriced_steps_in_place():
    dear = step(0, "dear", price=Price(Decimal(3), Decimal(15)))  # 1000 x 3 + 500 x 15: $0.0105
    local = step(1, "local")  # no price
    cheap = step(2, "cheap", price=Price(Decimal(1), Decimal(2)))  # 1000 x 1 + 500 x 2: $0.002
    plan, why = route("cheapest_first", dear, local, cheap)
    assert order_of(plan) == ["cheap", "local", "dear"]
    assert why.why == "by estimated cost: $0.0020, unpriced, $0.0105"
    assert [s["step"] for s in why.as_dict()["order"]] == [2, 1, 0]


def test_ties_keep_the_configured_order():
    same = Price(Decimal(1), Decimal(2))
    plan, _ = route(
        "cheapest_first", step(0, "x", price=same), step(1, "y", price=Price(1, 1)), step(2, "z", price=same)
    )
    assert order_of(plan) == ["y", "x", "z"]
    plan, _ = route(
        "healthiest_first", step(0, "a"), step(1, "b"), figures=[health(1, score=90), health(2, score=90)]
    )
    assert order_of(plan) == ["a", "b"]


def test_healthiest_first_sorts_by_score_and_steps_without_data_keep_their_places():
    steps = (step(0, "a"), step(1, "new"), step(2, "c"), step(3, "d"))
    figures = [health(1, score=60), health(3, score=95), health(4, score=80)]
    plan, why = route("healthiest_first", *steps, figures=figures)
    assert order_of(plan) == ["c", "new", "d", "a"]
    assert why.why == "by health score: 95, no data, 80, 60"


def test_lowest_latency_sorts_by_p50_then_p95():
    steps = (step(0, "a"), step(1, "b"), step(2, "c"))
    figures = [health(1, p50=900.0), health(2, p50=300.0, p95=2500.0), health(3, p50=300.0, p95=400.0)]
    plan, why = route("lowest_latency", *steps, figures=figures)
    assert order_of(plan) == ["c", "b", "a"]
    assert why.why == "by p50 latency over 15 min: 300 ms, 300 ms, 900 ms"


def test_lowest_latency_with_no_data_keeps_the_configured_order():
    plan, why = route("lowest_latency", step(0, "a"), step(1, "b"), figures=[health(1, p50=None)])
    assert order_of(plan) == ["a", "b"] and why.why == "by p50 latency over 15 min: no data, no data"


def test_weighted_draws_the_first_step_by_weight_then_keeps_the_rest_in_order():
    steps = (step(0, "a", weight=3), step(1, "b", weight=1), step(2, "c", weight=0))
    rng = random.Random(12)
    firsts, orders = Counter(), set()
    for _ in range(10_000):
        plan, _why = route("weighted", *steps, rng=rng)
        firsts[plan.steps[0].provider.name] += 1
        orders.add(tuple(order_of(plan)))
    assert abs(firsts["a"] / 10_000 - 0.75) < 0.02 and abs(firsts["b"] / 10_000 - 0.25) < 0.02
    assert firsts["c"] == 0
    assert orders == {("a", "b", "c"), ("b", "a", "c")}


def test_weighted_says_what_was_drawn_and_without_a_draw_shows_the_likeliest_order():
    steps = (step(0, "a", weight=1), step(1, "b", weight=3))
    plan, why = route("weighted", *steps, rng=None)
    assert order_of(plan) == ["b", "a"]
    assert why.why == "likeliest by weight: step 2 first (weight 3 of 4), the rest in the configured order"
    plan, why = route("weighted", step(0, "a", weight=0), step(1, "b", weight=0), rng=random.Random(1))
    assert order_of(plan) == ["a", "b"] and why.why == "in the configured order (every weight is 0)"


# --- through the service: the walk follows the order, the ledger and the result say it ------


@pytest.fixture
def priced_chain(db) -> FallbackChain:
    """dear/m1 then cheap/m2, cheapest first."""
    dear = Provider.objects.create(name="dear", kind="simulated")
    cheap = Provider.objects.create(name="cheap", kind="simulated")
    chain = FallbackChain.objects.create(
        name="Priced", slug="priced", default_retries=0, strategy="cheapest_first"
    )
    ChainStep.objects.create(chain=chain, position=0, provider=dear, model="m1")
    ChainStep.objects.create(chain=chain, position=1, provider=cheap, model="m2")
    for model, price in (("m1", 10), ("m2", 1)):
        ModelPrice.objects.create(
            provider_kind="simulated",
            model=model,
            input_per_mtok=Decimal(price),
            output_per_mtok=Decimal(price * 2),
            effective_from=dt.date(2025, 1, 1),
        )
    return chain


@pytest.fixture
def adapter():
    return ScriptedAdapter(FakeClock())


def overrides(adapter, **more):
    return {"adapter_for": lambda kind: adapter, "clock": adapter.clock, **more}


@pytest.mark.django_db(transaction=True)
async def test_the_walk_tries_the_cheapest_step_first_and_the_ledger_says_why(priced_chain, adapter):
    adapter.script("cheap", "m2", ok("cheap answer", model="m2"))
    result = await complete(
        chain="priced", messages=HELLO, params={"max_tokens": 100}, overrides=overrides(adapter)
    )
    assert result.provider_name == "cheap" and [a.step_position for a in result.attempts] == [1]
    # 6 prompt tokens ("hello": 2, and 4 a message) and 100 output: $1 + $2 vs $10 + $20 a million
    expected = {
        "strategy": "cheapest_first",
        "order": [
            {"step": 1, "provider": "cheap", "model": "m2"},
            {"step": 0, "provider": "dear", "model": "m1"},
        ],
        "why": "by estimated cost: $0.00021, $0.0021",
    }
    assert result.route.as_dict() == expected
    completion = await Completion.objects.aget(id=result.request_id)
    assert completion.route == expected
    assert completion.fallback_used is False  # the first step tried answered


@pytest.mark.django_db(transaction=True)
async def test_a_seeded_rng_decides_the_weighted_draw(priced_chain, adapter):
    await FallbackChain.objects.filter(pk=priced_chain.pk).aupdate(strategy="weighted")
    await ChainStep.objects.filter(chain=priced_chain, position=0).aupdate(weight=0)
    await (await FallbackChain.objects.aget(pk=priced_chain.pk)).asave()  # a save reloads the plan
    adapter.script("cheap", "m2", ok("drawn", model="m2"))
    result = await complete(
        chain="priced", messages=HELLO, overrides=overrides(adapter, rng=random.Random(3))
    )
    assert result.provider_name == "cheap"
    assert (
        result.route.why == "drawn by weight: step 2 first (weight 1 of 1), the rest in the configured order"
    )


@pytest.mark.django_db(transaction=True)
async def test_healthiest_first_reads_the_ledger(priced_chain, adapter):
    await FallbackChain.objects.filter(pk=priced_chain.pk).aupdate(strategy="healthiest_first")
    await (await FallbackChain.objects.aget(pk=priced_chain.pk)).asave()
    now = timezone.now()
    rows = [("dear", "m1", "server_error"), ("dear", "m1", "success"), ("cheap", "m2", "success")]
    for i, (name, model, outcome) in enumerate(rows):  # dear: 50 % errors; cheap: none
        await Attempt.objects.acreate(
            completion_id=uuid.uuid4(),
            started_at=now - dt.timedelta(seconds=i + 1),
            source="api",
            step_position=0,
            provider=await Provider.objects.aget(name=name),
            provider_name=name,
            provider_kind="simulated",
            model=model,
            outcome=outcome,
            latency_ms=100.0,
        )
    health_forget()
    adapter.script("cheap", "m2", ok("healthier", model="m2"))
    result = await complete(chain="priced", messages=HELLO, overrides=overrides(adapter))
    health_forget()
    assert result.provider_name == "cheap"
    assert result.route.why == "by health score: 100, 50"


@pytest.mark.django_db(transaction=True)
async def test_the_route_survives_the_journal_into_the_completion_row(priced_chain, adapter, buffered_ledger):
    adapter.script("cheap", "m2", ok("journaled", model="m2"))
    result = await complete(chain="priced", messages=HELLO, overrides=overrides(adapter))
    assert buffered_ledger.flush(5)
    completion = await Completion.objects.aget(id=result.request_id)
    assert completion.route == result.route.as_dict() and completion.route["strategy"] == "cheapest_first"
