"""The SSE endpoint (Django's async client): tokens as events, then the answer with its timeline."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from django.test import AsyncClient
from django.urls import reverse
from django.utils import timezone

from playground.models import PlaygroundRun
from providers.engine.results import AttemptRecord
from providers.models import ChainStep, Completion, FallbackChain, Provider
from providers.services import breaker as breaker_module
from providers.services.breaker import CircuitBreaker
from providers.services.breaker_local import LocalCircuits
from providers.services.breaker_policy import BreakerPolicy
from tests.playground.asgi_server import form_data

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def aclient(user) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


def parse_sse(body: bytes) -> list[tuple[str, str]]:
    events = []
    for block in body.decode().split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if lines:
            name = lines[0].removeprefix("event: ")
            events.append((name, "\n".join(line.removeprefix("data: ") for line in lines[1:])))
    return events


async def send(client: AsyncClient, **fields) -> PlaygroundRun:
    response = await client.post(
        reverse("playground:send"), form_data(**fields), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200, response.content
    return await PlaygroundRun.objects.order_by("-created_at").afirst()


async def stream_body(client: AsyncClient, run: PlaygroundRun) -> tuple[object, list[tuple[str, str]]]:
    response = await client.get(reverse("playground:run_stream", args=[run.pk]))
    body = b"".join([chunk async for chunk in response.streaming_content])
    return response, parse_sse(body)


async def test_tokens_are_sent_as_events_then_the_answer_with_its_timeline(aclient, chains, user):
    run = await send(aclient)
    response, events = await stream_body(aclient, run)
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache" and response["X-Accel-Buffering"] == "no"
    tokens = [json.loads(data) for name, data in events if name == "token"]
    assert len(tokens) > 3 and events[-1][0] == "done"
    done = events[-1][1]
    assert f'id="answer-{run.pk}"' in done and 'data-completion-outcome="success"' in done
    await run.arefresh_from_db()
    assert run.status == "done" and run.outcome == "success" and run.answer == "".join(tokens)
    completion = await Completion.objects.aget(pk=run.completion_id)
    assert completion.stream and completion.source == "playground" and completion.user_id == user.pk


async def test_a_run_streams_only_once(aclient, chains):
    run = await send(aclient)
    await stream_body(aclient, run)
    again = await aclient.get(reverse("playground:run_stream", args=[run.pk]))
    assert again.status_code == 204
    assert await Completion.objects.acount() == 1


async def test_injected_503_on_step_one_shows_the_failed_attempt_and_the_fallback(aclient, chains):
    run = await send(aclient, **{"fault-0-failure": "server_error", "fault-0-step": "0"})
    _, events = await stream_body(aclient, run)
    done = events[-1][1]
    assert 'data-outcome="server_error" data-injected' in done and 'data-outcome="success"' in done
    assert "data-fallback" in done and "Simulated answer from second" in done
    assert "injected: service unavailable" in done and ">503<" in done


async def test_a_budget_block_says_which_budget(aclient, chains):
    await FallbackChain.objects.filter(slug="two").aupdate(daily_budget_usd=Decimal("0.00"))
    chain = await FallbackChain.objects.aget(slug="two")
    await chain.asave()
    run = await send(aclient)
    _, events = await stream_body(aclient, run)
    assert [name for name, _ in events] == ["done"]
    assert "Budget reached: the chain daily budget ($0.00 spent of $0.00)" in events[0][1]
    assert 'data-completion-outcome="budget_blocked"' in events[0][1]


async def test_all_providers_failed_lists_every_attempt(aclient, chains):
    faults = {"fault-0-failure": "auth_error", "fault-0-step": "0"}
    faults |= {"fault-1-failure": "auth_error", "fault-1-step": "1"}
    run = await send(aclient, **faults)
    _, events = await stream_body(aclient, run)
    done = events[-1][1]
    assert "All providers failed (last failure: auth_error)" in done
    assert done.count('data-outcome="auth_error"') == 2
    await run.arefresh_from_db()
    assert run.outcome == "failed"


async def test_a_stream_cut_keeps_the_partial_answer_and_says_so(aclient, chains):
    run = await send(
        aclient, **{"fault-0-failure": "stream_cut", "fault-0-step": "0", "fault-0-cut_after_tokens": "2"}
    )
    _, events = await stream_body(aclient, run)
    assert [name for name, _ in events] == ["token", "token", "done"]
    assert "The stream was interrupted after the first tokens" in events[-1][1]
    await run.arefresh_from_db()
    assert run.outcome == "stream_interrupted" and run.answer


async def test_cancelling_the_response_mid_stream_records_the_run_as_cancelled(aclient, chains):
    """What the ASGI handler does when the browser goes away: it cancels the response task."""
    await Provider.objects.filter(name="first").aupdate(options={"latency_ms": 2000})
    provider = await Provider.objects.aget(name="first")
    await provider.asave()
    run = await send(aclient)
    response = await aclient.get(reverse("playground:run_stream", args=[run.pk]))
    first_token = asyncio.Event()

    async def consume() -> None:
        async for chunk in response.streaming_content:
            if b"event: token" in chunk:
                first_token.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_token.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await run.arefresh_from_db()
    assert run.outcome == "cancelled" and run.answer and run.error_message.startswith("Stopped")
    completion = await Completion.objects.aget(pk=run.completion_id)
    assert completion.outcome == "cancelled"


async def test_every_step_rate_limited_says_when_to_try_again(aclient, chains):
    faults = {"fault-0-failure": "rate_limited", "fault-0-step": "0", "fault-0-retry_after_s": "20"}
    faults |= {"fault-1-failure": "rate_limited", "fault-1-step": "1", "fault-1-retry_after_s": "12"}
    run = await send(aclient, **faults)
    _, events = await stream_body(aclient, run)
    assert "Every provider is rate-limited; try again in 12 s." in events[-1][1]
    await run.arefresh_from_db()
    assert run.outcome == "failed"


async def test_every_circuit_open_says_when_the_next_try_is(aclient, chains, monkeypatch):
    breaker = CircuitBreaker(
        BreakerPolicy(threshold=1, cooldown_s=30), clock=lambda: 1000.0, circuits=LocalCircuits()
    )
    monkeypatch.setattr(breaker_module, "_breaker", breaker)
    async for step in ChainStep.objects.filter(chain__slug="two").select_related("provider"):
        outcome = "server_error" if step.model == "m2" else "auth_error"  # open for 30 s and 300 s
        breaker.record(failed_attempt(step, outcome))
    run = await send(aclient)
    _, events = await stream_body(aclient, run)
    assert "Every provider&#x27;s circuit is open; next try in 30 s." in events[-1][1]


async def test_a_chain_with_no_usable_step_says_so(aclient, chains):
    off = await Provider.objects.acreate(name="off", kind="simulated", enabled=False)
    support = await FallbackChain.objects.acreate(name="Support", slug="support")
    await ChainStep.objects.acreate(chain=support, position=0, provider=off, model="m")
    run = await send(aclient, chain="support")
    _, events = await stream_body(aclient, run)
    await run.arefresh_from_db()
    assert run.error_message == (
        "Chain 'support' has no usable step: every step is disabled or its provider is disabled. "
        "No provider was called."
    )
    assert "Chain &#x27;support&#x27; has no usable step" in events[-1][1]


def failed_attempt(step: ChainStep, outcome: str) -> AttemptRecord:
    return AttemptRecord(
        step_position=step.position,
        provider_id=step.provider_id,
        provider_name=step.provider.name,
        provider_kind=step.provider.kind,
        model=step.model,
        retry_index=0,
        outcome=outcome,
        started_at=timezone.now(),
        latency_ms=1.0,
    )
