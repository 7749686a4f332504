"""Streaming: fallback until the first token, StreamInterrupted after it, cancel on close."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from providers.engine.clock import FakeClock
from providers.engine.fallback import run_stream
from providers.engine.results import AllProvidersFailed, StreamInterrupted
from providers.engine.types import FailureClass as F
from providers.engine.types import StreamEvent, Usage
from tests.providers.engine_fakes import (
    MESSAGES,
    PARAMS,
    PRICE,
    ScriptedAdapter,
    Stall,
    Takes,
    chain,
    fail,
    make_deps,
    outcomes,
    step,
)


@pytest.fixture
def fake() -> ScriptedAdapter:
    return ScriptedAdapter(FakeClock())


async def collect(stream) -> list[str]:
    return [event.text async for event in stream]


async def test_streams_the_text_and_sets_the_result_when_done(fake):
    final = StreamEvent(finish_reason="stop", usage=Usage(20, 3))
    fake.script("a", "m", ["Hel", "lo", "!", final])
    stream = run_stream(chain(step(0, "a", price=PRICE)), MESSAGES, PARAMS, make_deps(fake))
    assert await collect(stream) == ["Hel", "lo", "!", ""]
    assert stream.result is not None
    assert stream.result.response.text == "Hello!" and stream.result.response.finish_reason == "stop"
    assert stream.result.usage == Usage(20, 3)
    assert stream.result.cost_usd == Decimal("0.000105")  # (20*3 + 3*15) / 1e6
    assert outcomes(stream.attempts) == [(0, 0, "success")]
    assert stream.attempts[0].ttft_ms is not None and fake.streams_closed == 1


async def test_nothing_is_yielded_before_the_first_content_chunk(fake):
    fake.script("a", "m", [StreamEvent(usage=Usage(input_tokens=9)), "", "first", "second"])
    stream = run_stream(chain(step(0, "a")), MESSAGES, PARAMS, make_deps(fake))
    assert await collect(stream) == ["first", "second"]
    assert stream.result.usage == Usage(9, 0)


async def test_falls_back_when_a_stream_fails_before_its_first_token(fake):
    fake.script("a", "m", fail(F.SERVER_ERROR, status=500))
    fake.script("b", "m", ["from ", "b"])
    stream = run_stream(chain(step(0, "a"), step(1, "b")), MESSAGES, PARAMS, make_deps(fake))
    assert await collect(stream) == ["from ", "b"]
    assert outcomes(stream.attempts) == [(0, 0, "server_error"), (1, 0, "success")]
    assert stream.result.answered_step == 1


async def test_a_stream_that_ends_before_any_content_is_a_retried_bad_response(fake):
    fake.script("a", "m", [StreamEvent(finish_reason="stop")], ["ok"])
    stream = run_stream(chain(step(0, "a", retries=1)), MESSAGES, PARAMS, make_deps(fake))
    assert await collect(stream) == ["ok"]
    assert outcomes(stream.attempts) == [(0, 0, "bad_response"), (0, 1, "success")]


async def test_first_token_timeout_falls_back_and_closes_the_slow_stream(fake):
    fake.script("a", "m", [Stall(30), "too late"])
    fake.script("b", "m", ["fast"])
    plan = chain(step(0, "a", first_token_timeout_s=0.02), step(1, "b"))
    stream = run_stream(plan, MESSAGES, PARAMS, make_deps(fake))
    assert await collect(stream) == ["fast"]
    assert outcomes(stream.attempts) == [(0, 0, "timeout"), (1, 0, "success")]
    message = "no first token within the step's 0.02 s first-token timeout"
    assert stream.attempts[0].error_message == message
    assert fake.streams_closed == 2


async def test_a_cut_after_the_first_token_raises_stream_interrupted_without_fallback(fake):
    fake.script("a", "m", ["Hello, ", "wor", fail(F.CONNECTION_ERROR, "connection reset")])
    plan = chain(step(0, "a", price=PRICE), step(1, "b"))
    stream = run_stream(plan, MESSAGES, PARAMS, make_deps(fake))
    received = []
    with pytest.raises(StreamInterrupted) as caught:
        async for event in stream:
            received.append(event.text)
    assert received == ["Hello, ", "wor"]
    assert fake.calls == [("a", "m")]  # no fallback after the first token
    (attempt,) = caught.value.attempts
    assert attempt.outcome == "stream_interrupted"
    assert attempt.error_message == "connection reset [usage estimated]"
    # 10 chars received -> 3 output tokens; 27 prompt chars -> 7 input tokens
    assert attempt.usage == Usage(7, 3)
    assert attempt.cost_usd == Decimal("0.000066")  # (7*3 + 3*15) / 1e6
    assert stream.result is None and fake.streams_closed == 1


async def test_an_interrupted_stream_bills_the_usage_the_adapter_reported(fake):
    fake.script("a", "m", ["partial", fail(F.SERVER_ERROR, usage=Usage(50, 12))])
    stream = run_stream(chain(step(0, "a")), MESSAGES, PARAMS, make_deps(fake))
    with pytest.raises(StreamInterrupted) as caught:
        await collect(stream)
    assert caught.value.attempts[0].usage == Usage(50, 12)
    assert "estimated" not in caught.value.attempts[0].error_message


async def test_a_stall_after_the_first_token_interrupts_the_stream(fake):
    fake.script("a", "m", ["Hel", Stall(30), "lo"])
    plan = chain(step(0, "a", idle_timeout_s=0.02), step(1, "b"))
    stream = run_stream(plan, MESSAGES, PARAMS, make_deps(fake))
    with pytest.raises(StreamInterrupted) as caught:
        await collect(stream)
    assert outcomes(caught.value.attempts) == [(0, 0, "stream_interrupted")]
    message = caught.value.attempts[0].error_message
    assert message.startswith("stream stalled: no event within the step's 0.02 s idle timeout")
    assert fake.streams_closed == 1


async def test_a_stream_outlives_its_step_timeout_while_events_keep_coming(fake):
    fake.script("a", "m", ["one", Stall(0.05), "two", Stall(0.05), "three"])
    plan = chain(step(0, "a", timeout_s=0.02, first_token_timeout_s=1, idle_timeout_s=1))
    stream = run_stream(plan, MESSAGES, PARAMS, make_deps(fake))
    assert await collect(stream) == ["one", "two", "three"]
    assert outcomes(stream.attempts) == [(0, 0, "success")]


async def test_stream_requests_read_as_long_as_the_longer_of_first_token_and_idle(fake):
    fake.script("a", "m", ["ok"])
    plan = chain(
        step(0, "a", timeout_s=2, first_token_timeout_s=4, idle_timeout_s=12),
        connect_timeout_s=5,
        deadline_s=10,
    )
    await collect(run_stream(plan, MESSAGES, PARAMS, make_deps(fake)))
    timeouts = fake.requests[0].timeouts
    assert (timeouts.connect_s, timeouts.read_s, timeouts.first_token_s) == (4, 10, 4)


async def test_a_stream_still_running_at_the_deadline_is_interrupted(fake):
    fake.script("a", "m", ["early", Takes(11, "late"), "too late"])
    plan = chain(step(0, "a", idle_timeout_s=30), deadline_s=10)
    stream = run_stream(plan, MESSAGES, PARAMS, make_deps(fake))
    received = []
    with pytest.raises(StreamInterrupted) as caught:
        async for event in stream:
            received.append(event.text)
    assert received == ["early", "late"]
    assert "the request deadline passed" in caught.value.attempts[0].error_message


async def test_aclose_records_a_cancelled_attempt_and_closes_the_upstream(fake):
    told = []
    fake.script("a", "m", ["one", "two", "three"])
    deps = make_deps(fake, on_outcome=lambda s, outcome: told.append(outcome))
    stream = run_stream(chain(step(0, "a"), step(1, "b")), MESSAGES, PARAMS, deps)
    assert (await anext(stream)).text == "one"
    await stream.aclose()
    assert outcomes(stream.attempts) == [(0, 0, "cancelled")]
    assert stream.attempts[0].usage.output_tokens == 1  # "one": partial tokens billed
    assert fake.streams_closed == 1 and fake.calls == [("a", "m")]
    assert told == [] and stream.result is None


async def test_async_with_closes_the_stream_on_exit(fake):
    fake.script("a", "m", ["one", "two"])
    async with run_stream(chain(step(0, "a")), MESSAGES, PARAMS, make_deps(fake)) as stream:
        await anext(stream)
    assert outcomes(stream.attempts) == [(0, 0, "cancelled")] and fake.streams_closed == 1


async def test_aclose_before_iterating_records_nothing(fake):
    stream = run_stream(chain(step(0, "a")), MESSAGES, PARAMS, make_deps(fake))
    await stream.aclose()
    assert stream.attempts == [] and fake.calls == []


async def test_cancelling_the_consumer_mid_stream_records_cancelled(fake):
    fake.script("a", "m", ["one", Stall(30), "two"])
    stream = run_stream(chain(step(0, "a", idle_timeout_s=60)), MESSAGES, PARAMS, make_deps(fake))
    first = asyncio.Event()

    async def consume():
        async for _ in stream:
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcomes(stream.attempts) == [(0, 0, "cancelled")] and fake.streams_closed == 1


async def test_every_stream_failing_before_a_token_raises_all_providers_failed(fake):
    fake.script("a", "m", fail(F.AUTH_ERROR, status=401))
    fake.script("b", "m", [])
    stream = run_stream(chain(step(0, "a"), step(1, "b")), MESSAGES, PARAMS, make_deps(fake))
    with pytest.raises(AllProvidersFailed) as caught:
        await collect(stream)
    assert outcomes(caught.value.attempts) == [(0, 0, "auth_error"), (1, 0, "bad_response")]
