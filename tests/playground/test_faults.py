"""Fault injection: chosen steps fail through the real engine path and are marked injected."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache

from providers.adapters import get_adapter
from providers.engine.results import StreamInterrupted
from providers.models import Attempt, ChainStep, Completion, FallbackChain, Provider
from providers.services.chains import chain_load
from providers.services.completions import chain_resolve, complete
from providers.services.faults import (
    FaultSpec,
    StepOutOfRange,
    adapter_for_with_faults,
    fault_specs_bind,
)
from providers.services.streaming import stream

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "one two three four five"}]


@pytest.fixture(autouse=True)
def clear_cache():
    cache.clear()


@pytest.fixture
def chain(db) -> FallbackChain:
    first = Provider.objects.create(name="first", kind="simulated", options={"latency_ms": 0})
    second = Provider.objects.create(name="second", kind="simulated", options={"latency_ms": 0})
    chain = FallbackChain.objects.create(
        name="Two", slug="two", is_default=True, default_retries=0, step_timeout_s=30, backoff_base_s=0
    )
    ChainStep.objects.create(chain=chain, position=0, provider=first, model="m1")
    ChainStep.objects.create(chain=chain, position=1, provider=second, model="m2")
    return chain


async def faulty(*specs: FaultSpec) -> dict:
    plan = (await chain_resolve("two")).plan
    return {"adapter_for": adapter_for_with_faults(fault_specs_bind(specs, plan))}


async def attempts_of(request_id) -> list[tuple]:
    rows = Attempt.objects.filter(completion_id=request_id).order_by("started_at", "id")
    return [(a.step_position, a.outcome, a.http_status, a.retry_after_s, a.injected) async for a in rows]


async def test_injected_503_on_step_one_falls_back_and_is_marked_injected(chain):
    result = await complete(chain="two", messages=HELLO, overrides=await faulty(FaultSpec(0, "server_error")))
    assert result.fallback_used and result.answered_step == 1
    assert await attempts_of(result.request_id) == [
        (0, "server_error", 503, None, True),
        (1, "success", None, None, False),
    ]
    completion = await Completion.objects.aget(id=result.request_id)
    assert completion.injected and completion.outcome == "success"


async def test_injected_429_carries_its_retry_after(chain):
    spec = FaultSpec(0, "rate_limited", retry_after_s=7)
    result = await complete(chain="two", messages=HELLO, overrides=await faulty(spec))
    rows = await attempts_of(result.request_id)
    assert rows[0] == (0, "rate_limited", 429, 7.0, True)


async def test_injected_timeout_fails_fast_instead_of_waiting_the_step_timeout(chain):
    started = time.perf_counter()
    result = await complete(chain="two", messages=HELLO, overrides=await faulty(FaultSpec(0, "timeout")))
    assert time.perf_counter() - started < 2
    assert (await attempts_of(result.request_id))[0][:2] == (0, "timeout")


async def test_injected_auth_error_on_every_step_fails_the_request(chain):
    from providers.engine.results import AllProvidersFailed

    with pytest.raises(AllProvidersFailed) as info:
        await complete(
            chain="two",
            messages=HELLO,
            overrides=await faulty(FaultSpec(0, "auth_error"), FaultSpec(1, "auth_error")),
        )
    assert [(a.outcome, a.http_status, a.injected) for a in info.value.attempts] == [
        ("auth_error", 401, True),
        ("auth_error", 401, True),
    ]


async def test_times_limits_how_many_calls_fail(chain):
    await FallbackChain.objects.filter(pk=chain.pk).aupdate(default_retries=1)
    step = await ChainStep.objects.aget(chain=chain, position=0)
    await step.asave()  # invalidates the cached plan
    result = await complete(
        chain="two", messages=HELLO, overrides=await faulty(FaultSpec(0, "server_error", times=1))
    )
    assert result.answered_step == 0
    assert [r[:2] for r in await attempts_of(result.request_id)] == [(0, "server_error"), (0, "success")]


async def test_stream_cut_after_two_tokens_interrupts_the_stream(chain):
    streamed = await stream(
        chain="two", messages=HELLO, overrides=await faulty(FaultSpec(0, "stream_cut", cut_after_tokens=2))
    )
    received = []
    with pytest.raises(StreamInterrupted):
        async for event in streamed:
            if event.text:
                received.append(event.text)
    assert len(received) == 2
    rows = await attempts_of(streamed.request_id)
    assert rows == [(0, "stream_interrupted", None, None, True)]
    completion = await Completion.objects.aget(id=streamed.request_id)
    assert completion.outcome == "stream_interrupted" and completion.injected


async def test_stream_cut_before_the_first_token_still_falls_back(chain):
    streamed = await stream(
        chain="two", messages=HELLO, overrides=await faulty(FaultSpec(0, "stream_cut", cut_after_tokens=0))
    )
    text = "".join([event.text async for event in streamed])
    assert "from second" in text and streamed.result.fallback_used
    assert [r[:2] for r in await attempts_of(streamed.request_id)] == [
        (0, "connection_error"),
        (1, "success"),
    ]


def test_binding_a_step_the_chain_does_not_have_is_an_error(chain):
    with pytest.raises(StepOutOfRange, match="step 3 does not exist: the chain has 2 step"):
        fault_specs_bind([FaultSpec(2, "timeout")], chain_load("two").plan)


def test_unknown_fault_kind_is_refused():
    with pytest.raises(ValueError, match="unknown fault"):
        FaultSpec(0, "meteor_strike")


def test_without_faults_the_base_adapter_is_used_unchanged():
    assert adapter_for_with_faults([])("simulated") is get_adapter("simulated")


def test_specs_round_trip_through_json_dicts():
    spec = FaultSpec(1, "rate_limited", retry_after_s=2.5, times=3)
    assert FaultSpec.from_dict(spec.as_dict()) == spec
