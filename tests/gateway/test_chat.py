"""POST /v1/chat/completions through the lean ASGI path: OpenAI's shapes and what happened."""

from __future__ import annotations

import json

import pytest

from providers.models import Attempt, Completion
from tests.fakes import FakeUsage, Fault

from .conftest import HELLO, STORED_KEY, auth, sse_data, sse_json

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/v1/chat/completions"


async def test_answer_has_openai_shape_and_says_what_happened(api, api_key, upstream):
    upstream.script("openai", [Fault.ok("Hi there.", usage=FakeUsage(input=30, output=5, cached=10))])
    response = await api.post(URL, json={"model": "main", "messages": HELLO}, headers=auth(api_key))
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "primary"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi there.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"]["prompt_tokens"] == 30 and body["usage"]["completion_tokens"] == 5
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 10}
    rana = body["rana"]
    headers = response.headers
    assert headers["x-rana-provider"] == rana["provider"] == "fake"
    assert headers["x-rana-model"] == rana["model"] == "primary"
    assert headers["x-rana-attempts"] == "1" and headers["x-rana-fallback"] == "false"
    assert headers["x-rana-request-id"] == rana["request_id"] == headers["x-request-id"]
    assert headers["x-rana-cost-usd"] == rana["cost_usd"] == "0"  # the fake model has no price
    assert [a["outcome"] for a in rana["attempts"]] == ["success"]


async def test_fallback_is_visible_in_headers_and_the_rana_object(api, api_key, upstream):
    upstream.script("openai", [Fault.error("server_error")], model="primary")
    response = await api.post(URL, json={"model": "main", "messages": HELLO}, headers=auth(api_key))
    assert response.status_code == 200
    assert response.headers["x-rana-fallback"] == "true" and response.headers["x-rana-attempts"] == "2"
    assert response.headers["x-rana-model"] == "backup"
    attempts = response.json()["rana"]["attempts"]
    assert [(a["step"], a["model"], a["outcome"], a["http_status"]) for a in attempts] == [
        (0, "primary", "server_error", 500),
        (1, "backup", "success", None),
    ]


async def test_completion_lands_in_the_ledger_with_the_key_prefix(api, api_key):
    response = await api.post(URL, json={"messages": HELLO}, headers=auth(api_key))
    completion = await Completion.objects.aget(id=response.headers["x-rana-request-id"])
    assert completion.source == "api" and completion.gateway_key_prefix == api_key[:13]
    assert completion.chain_slug == "main" and completion.outcome == "success"
    assert await Attempt.objects.filter(completion=completion).acount() == 1


@pytest.mark.parametrize("model", [None, "", "default"])
async def test_a_missing_or_default_model_uses_the_default_chain(api, api_key, model):
    payload = {"messages": HELLO} if model is None else {"model": model, "messages": HELLO}
    response = await api.post(URL, json=payload, headers=auth(api_key))
    assert response.status_code == 200 and response.headers["x-rana-chain"] == "main"


async def test_parameters_reach_the_provider(api, api_key, upstream):
    payload = {
        "model": "main",
        "messages": HELLO,
        "temperature": 0.2,
        "top_p": 0.5,
        "max_completion_tokens": 64,
        "stop": ["END"],
        "seed": 7,
        "user": "u-1",
        "n": 1,
        "stream": False,
    }
    assert (await api.post(URL, json=payload, headers=auth(api_key))).status_code == 200
    sent = upstream.last_request.json
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["stop"]) == (0.2, 0.5, 64, ["END"])
    assert (sent["seed"], sent["user"]) == (7, "u-1")


async def test_request_supplied_base_url_and_key_never_change_where_or_how_rana_calls(api, api_key, upstream):
    payload = {
        "model": "main",
        "messages": HELLO,
        "base_url": "http://169.254.169.254/latest",
        "api_base": "http://10.0.0.1/v1",
        "api_key": "sk-attacker-000000000000000000",
    }
    assert (await api.post(URL, json=payload, headers=auth(api_key))).status_code == 200
    assert len(upstream.requests) == 1
    assert upstream.last_request.headers["authorization"] == f"Bearer {STORED_KEY}"
    assert "api_key" not in upstream.last_request.json and "base_url" not in upstream.last_request.json


async def test_stream_chunks_in_openai_shape_with_usage_and_rana_on_the_final_chunk(api, api_key, upstream):
    upstream.script("openai", [Fault.ok("one two three")])
    payload = {"model": "main", "messages": HELLO, "stream": True, "stream_options": {"include_usage": True}}
    response = await api.post(URL, json=payload, headers=auth(api_key))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-rana-provider"] == "fake" and response.headers["x-rana-model"] == "primary"
    assert response.headers["x-rana-cost-usd"] == "0" and response.headers["x-rana-cost-final"] == "false"
    assert sse_data(response.content)[-1] == "[DONE]"
    chunks = sse_json(response.content)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1 and all("usage" in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "one two three"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-2]["usage"] is None
    final = chunks[-1]
    assert final["choices"] == [] and final["usage"]["completion_tokens"] == 7
    assert final["rana"]["request_id"] == response.headers["x-rana-request-id"]
    assert final["rana"]["attempts"][0]["outcome"] == "success"


async def test_stream_without_include_usage_has_no_usage_field(api, api_key):
    payload = {"model": "main", "messages": HELLO, "stream": True}
    response = await api.post(URL, json=payload, headers=auth(api_key))
    chunks = sse_json(response.content)
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and "rana" in chunks[-1]


async def test_stream_falls_back_before_the_first_token(api, api_key, upstream):
    upstream.script("openai", [Fault.error("rate_limited")], model="primary")
    payload = {"model": "main", "messages": HELLO, "stream": True}
    response = await api.post(URL, json=payload, headers=auth(api_key))
    assert response.headers["x-rana-fallback"] == "true" and response.headers["x-rana-attempts"] == "2"
    assert sse_json(response.content)[-1]["rana"]["model"] == "backup"


async def test_stream_failing_before_the_first_token_is_a_plain_http_error(api, api_key, upstream):
    upstream.set_default(Fault.error("server_error"))
    payload = {"model": "main", "messages": HELLO, "stream": True}
    response = await api.post(URL, json=payload, headers=auth(api_key))
    assert response.status_code == 502 and response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "server_error"


async def test_stream_cut_after_the_first_token_ends_in_band_without_done(api, api_key, upstream):
    upstream.script("openai", [Fault.truncated_stream(after_chunks=2)], model="primary")
    payload = {"model": "main", "messages": HELLO, "stream": True}
    response = await api.post(URL, json=payload, headers=auth(api_key))
    assert response.status_code == 200
    events = sse_data(response.content)
    assert "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert error["code"] == "stream_interrupted" and error["type"] == "upstream_error"
    assert len(upstream.requests) == 1  # no fallback after the first token
    completion = await Completion.objects.aget(id=response.headers["x-rana-request-id"])
    assert completion.outcome == "stream_interrupted"


async def test_a_cached_answer_says_so_and_calls_no_provider(api, api_key, upstream, main_chain):
    main_chain.cache_ttl_s = 60
    await main_chain.asave()
    payload = {"model": "main", "messages": HELLO, "temperature": 0}
    first = await api.post(URL, json=payload, headers=auth(api_key))
    second = await api.post(URL, json=payload, headers=auth(api_key))
    streamed = await api.post(URL, json={**payload, "stream": True}, headers=auth(api_key))
    assert len(upstream.requests) == 1
    assert (
        second.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]
    )
    assert second.headers["x-rana-cache"] == "hit" and second.headers["x-rana-attempts"] == "0"
    assert second.headers["x-rana-provider"] == "fake" and second.json()["rana"]["cache_hit"] is True
    assert streamed.headers["x-rana-cache"] == "hit" and sse_data(streamed.content)[-1] == "[DONE]"
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in sse_json(streamed.content) if c["choices"]
    )
    assert text == first.json()["choices"][0]["message"]["content"]
