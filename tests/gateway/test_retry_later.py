"""Answers that say when to retry: every step rate-limited is a 429, every circuit open a 503,
each with Retry-After; a chain with no usable step says so. Fake upstream on real sockets."""

from __future__ import annotations

import httpx
import openai
import pytest
from asgiref.sync import sync_to_async

from gateway.services.keys import gateway_key_create
from providers.models import ChainStep, FallbackChain, Provider
from providers.services import breaker as breaker_module
from providers.services.breaker import CircuitBreaker
from providers.services.breaker_local import LocalCircuits
from providers.services.breaker_policy import BreakerPolicy
from tests.fakes import Fault

from .conftest import HELLO, auth

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/v1/chat/completions"
NO_USABLE_STEP = "chain 'support' has no usable step: every step is disabled or its provider is disabled"


class Ticks:
    """The breaker's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks(monkeypatch, settings) -> Ticks:
    """The process's breaker on a hand-moved clock: one failure opens a circuit for 30 s, an
    auth error for 300 s."""
    settings.RANA_BREAKER_THRESHOLD, settings.RANA_BREAKER_COOLDOWN_S = 1, 30  # the chains' policy
    clock = Ticks()
    breaker = CircuitBreaker(BreakerPolicy(threshold=1, cooldown_s=30), clock=clock, circuits=LocalCircuits())
    monkeypatch.setattr(breaker_module, "_breaker", breaker)
    return clock


def rate_limited(seconds: str) -> Fault:
    return Fault.error("rate_limited", retry_after=seconds)


async def post(api, key: str, **body) -> httpx.Response:
    return await api.post(URL, json={"messages": HELLO, **body}, headers=auth(key))


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


@pytest.mark.parametrize("stream", [False, True])
async def test_every_step_rate_limited_is_429_with_the_soonest_retry_after(api, api_key, upstream, stream):
    upstream.script("openai", [rate_limited("7")], model="primary")
    upstream.script("openai", [rate_limited("3")], model="backup")
    response = await post(api, api_key, stream=stream)
    assert response.status_code == 429 and response.headers["retry-after"] == "3"
    assert "x-should-retry" not in response.headers  # the SDKs back off and retry on their own
    error = error_of(response)
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert error["message"].startswith("Every provider of the chain 'main' is rate-limited; try again in 3 s")
    attempts = response.json()["rana"]["attempts"]
    assert [(a["outcome"], a["http_status"]) for a in attempts] == [("rate_limited", 429)] * 2


@pytest.mark.parametrize("stream", [False, True])
async def test_every_circuit_open_is_503_with_the_soonest_half_open(api, api_key, upstream, ticks, stream):
    upstream.script("openai", [Fault.error("auth")], model="primary")  # open for 300 s
    upstream.script("openai", [Fault.error("server_error")], model="backup")  # open for 30 s
    assert (await post(api, api_key)).status_code == 502
    ticks.now += 10
    response = await post(api, api_key, stream=stream)
    assert response.status_code == 503 and response.headers["retry-after"] == "20"
    assert "x-should-retry" not in response.headers
    error = error_of(response)
    assert (error["type"], error["code"]) == ("server_error", "circuit_open")
    assert "has its circuit open; next try in 20 s" in error["message"]
    attempts = response.json()["rana"]["attempts"]
    assert [a["error"] for a in attempts] == [
        "circuit open; half-open in 290 s",
        "circuit open; half-open in 20 s",
    ]
    assert len(upstream.requests) == 2  # the second request called no one


async def test_a_rate_limited_circuit_beside_a_failed_one_is_429_with_the_sooner_time(
    api, api_key, upstream, ticks
):
    upstream.script("openai", [rate_limited("7")], model="primary")  # open for 7 s, rate limited
    upstream.script("openai", [Fault.error("server_error")], model="backup")  # open for 30 s
    assert (await post(api, api_key)).status_code == 502  # a real failure among them
    response = await post(api, api_key)
    assert response.status_code == 429 and response.headers["retry-after"] == "7"
    attempts = response.json()["rana"]["attempts"]
    assert attempts[0]["error"] == "circuit open after rate limiting; retry in 7 s"


async def test_a_rate_limit_then_a_server_error_stays_502(api, api_key, upstream):
    upstream.script("openai", [rate_limited("7")], model="primary")
    upstream.script("openai", [Fault.error("server_error")], model="backup")
    response = await post(api, api_key)
    assert response.status_code == 502 and response.headers["x-should-retry"] == "false"
    assert "retry-after" not in response.headers
    assert (error_of(response)["type"], error_of(response)["code"]) == ("upstream_error", "server_error")


async def test_the_sdk_raises_rate_limit_error_on_the_429(api_key, upstream):
    from rana_site.asgi import application

    upstream.script("openai", [rate_limited("7")], model="primary")
    upstream.script("openai", [rate_limited("3")], model="backup")
    transport = httpx.ASGITransport(app=application)
    async with (
        httpx.AsyncClient(transport=transport) as http,
        openai.AsyncOpenAI(
            base_url="http://127.0.0.1/v1", api_key=api_key, max_retries=0, http_client=http
        ) as sdk,
    ):
        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.chat.completions.create(model="main", messages=HELLO)
    assert caught.value.status_code == 429 and caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "3"


@pytest.fixture
def support_chain(provider: Provider) -> FallbackChain:
    """Chain "support": a disabled step, and a step on a disabled provider."""
    off = Provider.objects.create(name="off", kind="simulated", enabled=False)
    chain = FallbackChain.objects.create(name="Support", slug="support", default_retries=0)
    ChainStep.objects.create(chain=chain, position=0, provider=provider, model="primary", enabled=False)
    ChainStep.objects.create(chain=chain, position=1, provider=off, model="sim-small")
    return chain


@pytest.mark.parametrize("stream", [False, True])
async def test_a_chain_with_no_usable_step_says_so(api, support_chain, upstream, stream):
    _, key = await sync_to_async(gateway_key_create)(name="support")
    response = await post(api, key, model="support", stream=stream)
    assert response.status_code == 503 and response.headers["x-should-retry"] == "false"
    error = error_of(response)
    assert error["message"] == NO_USABLE_STEP
    assert (error["type"], error["code"], error["param"]) == ("server_error", "no_usable_step", "model")
    assert upstream.requests == []
