"""The `rana` object says which order the chain's steps were tried in, and why."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from providers.models import FallbackChain, ModelPrice
from tests.fakes import Fault

from .conftest import HELLO, auth, sse_json

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/v1/chat/completions"
CHEAPEST_FIRST = {
    "strategy": "cheapest_first",
    "order": [
        {"step": 1, "provider": "fake", "model": "backup"},
        {"step": 0, "provider": "fake", "model": "primary"},
    ],
    # 6 prompt tokens ("hello": 2, and 4 a message) and max_tokens 100, at $10/$20 and $1/$2 a million
    "why": "by estimated cost: $0.00021, $0.0021",
}


@pytest.fixture
def cheapest_first(main_chain: FallbackChain) -> FallbackChain:
    for model, price in (("primary", 10), ("backup", 1)):
        ModelPrice.objects.create(
            provider_kind="openai_compatible",
            model=model,
            input_per_mtok=Decimal(price),
            output_per_mtok=Decimal(price * 2),
            effective_from=dt.date(2025, 1, 1),
        )
    main_chain.strategy = "cheapest_first"
    main_chain.save()
    return main_chain


def body(**more) -> dict:
    return {"model": "main", "messages": HELLO, "max_tokens": 100, **more}


async def test_an_answer_says_the_order_and_why(api, api_key, upstream, cheapest_first):
    upstream.script("openai", [Fault.ok("From the backup.")], model="backup")
    response = await api.post(URL, json=body(), headers=auth(api_key))
    rana = response.json()["rana"]
    assert response.status_code == 200 and rana["model"] == "backup" and rana["fallback"] is False
    assert {key: rana[key] for key in CHEAPEST_FIRST} == CHEAPEST_FIRST


async def test_a_failure_says_it_too(api, api_key, upstream, cheapest_first):
    upstream.script("openai", [Fault.error("server_error")], model="backup")
    upstream.script("openai", [Fault.error("server_error")], model="primary")
    response = await api.post(URL, json=body(), headers=auth(api_key))
    rana = response.json()["rana"]
    assert response.status_code == 502 and [a["model"] for a in rana["attempts"]] == ["backup", "primary"]
    assert {key: rana[key] for key in CHEAPEST_FIRST} == CHEAPEST_FIRST


async def test_a_stream_says_it_in_its_last_chunk(api, api_key, upstream, cheapest_first):
    upstream.script("openai", [Fault.ok("Streamed.")], model="backup")
    response = await api.post(URL, json=body(stream=True), headers=auth(api_key))
    rana = sse_json(response.content)[-1]["rana"]
    assert {key: rana[key] for key in CHEAPEST_FIRST} == CHEAPEST_FIRST


async def test_an_ordered_chain_says_so(api, api_key, upstream):
    upstream.script("openai", [Fault.ok("Hi.")], model="primary")
    rana = (await api.post(URL, json=body(), headers=auth(api_key))).json()["rana"]
    assert (rana["strategy"], rana["why"]) == ("ordered", "in the configured order")
    assert [s["model"] for s in rana["order"]] == ["primary", "backup"]
