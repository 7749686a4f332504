"""Timeouts that mean what they say, over real sockets: the step timeout bounds a whole attempt,
a stream's first-token and idle timeouts bound the waits before and after its first token."""

from __future__ import annotations

import json
import time

import pytest

from providers.models import Attempt, ChainStep, Completion, FallbackChain
from tests.fakes import Fault

from .conftest import HELLO, auth, sse_data, sse_json

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/v1/chat/completions"
SLACK_S = 1.5  # a busy machine's scheduling, never the chain's 30 s deadline


async def timed_post(api, api_key, payload) -> tuple[object, float]:
    started = time.monotonic()
    response = await api.post(URL, json=payload, headers=auth(api_key))
    return response, time.monotonic() - started


async def primary_step(chain: FallbackChain, **overrides) -> ChainStep:
    """The chain's first step, with its own timeouts (a saved step invalidates cached plans)."""
    step = await ChainStep.objects.aget(chain=chain, model="primary")
    for name, value in overrides.items():
        setattr(step, name, value)
    await step.asave()
    return step


async def ledger(response) -> tuple[Completion, list[tuple[str, str, str]]]:
    completion = await Completion.objects.aget(id=response.headers["x-rana-request-id"])
    rows = [
        (a.model, a.outcome, a.error_message)
        async for a in Attempt.objects.filter(completion=completion).order_by("step_position", "retry_index")
    ]
    return completion, rows


@pytest.fixture
async def timed_chain(main_chain: FallbackChain) -> FallbackChain:
    main_chain.deadline_s = 30.0
    await main_chain.asave()
    return main_chain


async def test_a_drip_is_cut_at_the_step_timeout_and_the_next_step_answers(
    api, api_key, upstream, timed_chain
):
    # one byte every half second: no read ever waits past the read timeout, the attempt does
    upstream.script("openai", [Fault.drip(delay_s=0.5, chunk_size=1)], model="primary")
    await primary_step(timed_chain, timeout_s=1.0)
    response, took = await timed_post(api, api_key, {"model": "main", "messages": HELLO})
    assert response.status_code == 200 and response.headers["x-rana-model"] == "backup"
    assert 1.0 <= took < 1.0 + SLACK_S
    completion, rows = await ledger(response)
    assert rows == [
        ("primary", "timeout", "no complete answer within the step's 1.0 s timeout"),
        ("backup", "success", ""),
    ]
    assert completion.outcome == "success" and completion.fallback_used


async def test_a_stream_that_stalls_after_its_first_token_ends_in_band_at_the_idle_timeout(
    api, api_key, upstream, timed_chain
):
    upstream.script("openai", [Fault.stalled_stream(after_chunks=2)], model="primary")
    await primary_step(timed_chain, idle_timeout_s=0.5)
    response, took = await timed_post(api, api_key, {"model": "main", "messages": HELLO, "stream": True})
    assert response.status_code == 200 and 0.5 <= took < 0.5 + SLACK_S
    events = sse_data(response.content)
    assert "[DONE]" not in events
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in sse_json(response.content)[:-1])
    assert text  # the first tokens were relayed before the stall
    error = json.loads(events[-1])
    assert error["error"] == {
        "message": "stream interrupted after the first token: timeout: "
        "stream stalled: no event within the step's 0.5 s idle timeout",
        "type": "upstream_error",
        "param": None,
        "code": "stream_interrupted",
    }
    assert [a["outcome"] for a in error["rana"]["attempts"]] == ["stream_interrupted"]
    assert len(upstream.requests) == 1  # no fallback after the first token
    completion, rows = await ledger(response)
    assert completion.outcome == "stream_interrupted"
    ((model, outcome, message),) = rows
    assert (model, outcome) == ("primary", "stream_interrupted")
    assert message.startswith("stream stalled: no event within the step's 0.5 s idle timeout")


async def test_no_first_token_within_the_first_token_timeout_falls_back(api, api_key, upstream, timed_chain):
    upstream.script("openai", [Fault.hang()], model="primary")
    await primary_step(timed_chain, first_token_timeout_s=0.5)
    response, took = await timed_post(api, api_key, {"model": "main", "messages": HELLO, "stream": True})
    assert response.status_code == 200 and response.headers["x-rana-fallback"] == "true"
    assert 0.5 <= took < 0.5 + SLACK_S
    assert sse_data(response.content)[-1] == "[DONE]"
    assert sse_json(response.content)[-1]["rana"]["model"] == "backup"
    completion, rows = await ledger(response)
    assert rows == [
        ("primary", "timeout", "no first token within the step's 0.5 s first-token timeout"),
        ("backup", "success", ""),
    ]
    assert completion.outcome == "success"
