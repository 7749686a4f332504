"""The simulated provider: no network, deterministic text, injectable faults."""

from __future__ import annotations

import math
import random

import httpx
import pytest

from providers.adapters.simulated import SimulatedAdapter, estimate_tokens, reply
from providers.engine.types import (
    ChatParams,
    ChatRequest,
    FailureClass,
    Message,
    ProviderConfig,
    ProviderError,
    Timeouts,
)


class RecordingSleep:
    """Stands in for asyncio.sleep: remembers every wait, waits for none."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def no_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"the simulated adapter touched the network: {request.url}")


@pytest.fixture
def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(no_network))


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def adapter(sleep: RecordingSleep) -> SimulatedAdapter:
    return SimulatedAdapter(rng=random.Random(0), sleep=sleep)


def request(prompt: str = "What is the capital of France?", **options: object) -> ChatRequest:
    params = ChatParams(max_tokens=options.pop("max_tokens", None))  # type: ignore[arg-type]
    provider = ProviderConfig(id=1, name="sim-a", kind="simulated", base_url="", options=options)
    return ChatRequest(provider, "sim-small", (Message("user", prompt),), params, Timeouts(read_s=3.0))


async def outcome(adapter: SimulatedAdapter, req: ChatRequest, client: httpx.AsyncClient) -> str:
    try:
        await adapter.complete(req, client)
    except ProviderError as exc:
        return exc.failure_class.value
    return "success"


async def test_answer_echoes_the_prompt_with_estimated_usage(adapter, client):
    response = await adapter.complete(request(latency_ms=0), client)
    assert (
        response.text == "Simulated answer from sim-a (sim-small). You said: What is the capital of France?"
    )
    assert (response.finish_reason, response.model) == ("stop", "sim-small")
    assert response.usage.input_tokens == estimate_tokens("What is the capital of France?") == 8
    assert response.usage.output_tokens == estimate_tokens(response.text)


async def test_the_same_prompt_gets_the_same_answer(adapter, client):
    first = await adapter.complete(request(latency_ms=0), client)
    second = await adapter.complete(request(latency_ms=0), client)
    assert (first.text, first.response_id) == (second.text, second.response_id)


async def test_max_tokens_truncates_with_finish_reason_length(adapter, client):
    response = await adapter.complete(request(max_tokens=4), client)
    assert response.finish_reason == "length"
    assert response.text == "Simulated answer from"


async def test_stream_yields_words_that_add_up_to_the_answer_then_usage(adapter, client):
    whole = await adapter.complete(request(latency_ms=0), client)
    events = [e async for e in adapter.stream(request(latency_ms=0), client)]
    assert "".join(e.text for e in events) == whole.text
    assert len(events) == len(whole.text.split(" ")) + 1
    assert (events[-1].finish_reason, events[-1].usage) == ("stop", whole.usage)


async def test_stream_latency_is_spread_over_chunks_after_ttft(adapter, client, sleep):
    [e async for e in adapter.stream(request(latency_ms=400, ttft_ms=100, chunks=4), client)]
    assert sleep.waits[0] == pytest.approx(0.1)
    assert sum(sleep.waits) == pytest.approx(0.4)
    assert len(sleep.waits) == 4


async def test_complete_waits_the_latency(adapter, client, sleep):
    await adapter.complete(request(latency_ms=250), client)
    assert sleep.waits == [pytest.approx(0.25)]


async def test_rate_limited_failure_carries_429_and_retry_after(adapter, client):
    req = request(failure_rate=1, failure_kinds=["rate_limited"], retry_after_s=3)
    with pytest.raises(ProviderError) as caught:
        await adapter.complete(req, client)
    error = caught.value
    assert (error.failure_class, error.status, error.retry_after_s) == (FailureClass.RATE_LIMITED, 429, 3.0)


async def test_server_error_failure_is_a_503_and_unknown_kinds_fall_back_to_it(adapter, client):
    with pytest.raises(ProviderError) as caught:
        await adapter.complete(request(failure_rate=1, failure_kinds=["meteor_strike"]), client)
    assert (caught.value.failure_class, caught.value.status) == (FailureClass.SERVER_ERROR, 503)


async def test_failure_in_a_stream_comes_before_any_text(adapter, client):
    events = adapter.stream(request(failure_rate=1, failure_kinds=["timeout"]), client)
    with pytest.raises(ProviderError) as caught:
        await anext(events)
    assert caught.value.failure_class == FailureClass.TIMEOUT


@pytest.mark.parametrize("stream", [False, True])
async def test_down_provider_refuses_at_once(adapter, client, sleep, stream):
    with pytest.raises(ProviderError) as caught:
        if stream:
            [e async for e in adapter.stream(request(down=True), client)]
        else:
            await adapter.complete(request(down=True), client)
    assert caught.value.failure_class == FailureClass.CONNECTION_ERROR
    assert "connection refused" in caught.value.message
    assert sleep.waits == []


async def test_hanging_provider_times_out_after_the_read_timeout(adapter, client, sleep):
    with pytest.raises(ProviderError) as caught:
        await adapter.complete(request(hang=True), client)
    assert caught.value.failure_class == FailureClass.TIMEOUT
    assert sleep.waits == [3.0]


async def test_interrupted_stream_fails_after_some_text_with_partial_usage(adapter, client):
    received: list[str] = []
    with pytest.raises(ProviderError) as caught:
        async for event in adapter.stream(request(latency_ms=0, interrupt_after=3), client):
            received.append(event.text)
    assert received == ["Simulated ", "answer ", "from "]
    assert caught.value.failure_class == FailureClass.CONNECTION_ERROR
    assert caught.value.usage.output_tokens == estimate_tokens("Simulated answer from")


async def test_seeded_failures_repeat_attempt_by_attempt(client):
    options = {"latency_ms": 0, "failure_rate": 0.5, "seed": 11}
    runs = []
    for _ in range(2):
        adapter = SimulatedAdapter(sleep=RecordingSleep())
        runs.append([await outcome(adapter, request(**options), client) for _ in range(16)])
    assert runs[0] == runs[1]
    assert {"success", "server_error"} == set(runs[0])


async def test_seeded_failures_depend_on_the_prompt_and_reset_restarts_them(client):
    adapter = SimulatedAdapter(sleep=RecordingSleep())
    options = {"latency_ms": 0, "failure_rate": 0.5, "seed": 11}
    first = [await outcome(adapter, request("prompt one", **options), client) for _ in range(16)]
    other = [await outcome(adapter, request("prompt two", **options), client) for _ in range(16)]
    adapter.reset()
    again = [await outcome(adapter, request("prompt one", **options), client) for _ in range(16)]
    assert first == again
    assert first != other


async def test_bad_option_values_fall_back_to_defaults(adapter, client, sleep):
    response = await adapter.complete(request(latency_ms="fast", failure_rate=None, down="no"), client)
    assert response.finish_reason == "stop"
    assert sleep.waits == [pytest.approx(0.05)]


async def test_given_usage_is_reported_and_a_cut_stream_reports_its_share(adapter, client):
    options = {"latency_ms": 0, "input_tokens": 1200, "output_tokens": 300, "cached_tokens": 400}
    response = await adapter.complete(request(**options), client)
    assert (response.usage.input_tokens, response.usage.output_tokens) == (1200, 300)
    assert response.usage.cached_tokens == 400
    sent: list[str] = []
    with pytest.raises(ProviderError) as caught:
        async for event in adapter.stream(request(**options, chunks=2, interrupt_after=1), client):
            sent.append(event.text)
    text, _ = reply(request())
    usage = caught.value.usage
    assert usage.input_tokens == 1200 and 0 < usage.output_tokens < 300
    assert usage.output_tokens == math.ceil(300 * len(sent[0]) / len(text))
