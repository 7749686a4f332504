"""Every failure in OpenAI's error shape, with the right status (lean ASGI path)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from gateway.services.keys import gateway_key_create, gateway_key_revoke
from providers.models import Completion
from tests.fakes import Fault

from .conftest import HELLO, STORED_KEY, auth, make_chain

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/v1/chat/completions"


def error_of(response) -> dict:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "No API key"),
        ({"authorization": "Basic abc"}, "Incorrect API key"),
        ({"authorization": "Bearer sk-openai-0000"}, "Incorrect API key"),
        ({"authorization": "Bearer rana_" + "x" * 40}, "Incorrect API key"),
    ],
)
async def test_missing_or_bad_key_is_401(api, api_key, headers, why):
    response = await api.post(URL, json={"messages": HELLO}, headers=headers)
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
    error = error_of(response)
    assert why in error["message"] and error["code"] == "invalid_api_key"


async def test_a_key_with_a_known_prefix_but_wrong_secret_is_401(api, api_key):
    forged = api_key[:13] + "A" * 35
    assert (await api.post(URL, json={"messages": HELLO}, headers=auth(forged))).status_code == 401


async def test_revoked_and_expired_keys_are_401(api, main_chain):
    _, revoked = await gateway_key_create_async(name="old")
    await sync(gateway_key_revoke)(prefix=revoked[:13])
    _, expired = await gateway_key_create_async(
        name="late", expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    for key, word in ((revoked, "revoked"), (expired, "expired")):
        response = await api.post(URL, json={"messages": HELLO}, headers=auth(key))
        assert response.status_code == 401 and word in error_of(response)["message"]


async def test_a_session_cookie_alone_is_401(api, api_key):
    headers = {"cookie": "sessionid=abc; csrftoken=def"}
    assert (await api.post(URL, json={"messages": HELLO}, headers=headers)).status_code == 401


async def test_unknown_chain_is_404_naming_the_model(api, api_key):
    response = await api.post(URL, json={"model": "gpt-9", "messages": HELLO}, headers=auth(api_key))
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "model_not_found" and error["param"] == "model" and "gpt-9" in error["message"]


async def test_a_chain_the_key_may_not_use_is_403(api, main_chain, solo_chain):
    _, key = await gateway_key_create_async(name="main only", chains=[main_chain])
    response = await api.post(URL, json={"model": "solo", "messages": HELLO}, headers=auth(key))
    assert response.status_code == 403 and error_of(response)["code"] == "chain_not_allowed"
    ok = await api.post(URL, json={"model": "main", "messages": HELLO}, headers=auth(key))
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function"}]}, "tools[0]"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "maybe"}, "tool_choice"),
        ({"n": 0}, "n"),
        ({"n": 2, "stream": True}, "n"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"temperature": 7}, "temperature"),
        ({"max_tokens": "lots"}, "max_tokens"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": []}, "messages"),
        ({"stream": "yes"}, "stream"),
        ({"model": 5}, "model"),
    ],
)
async def test_what_would_change_the_answer_is_refused_with_400_naming_it(
    api, api_key, upstream, extra, param
):
    response = await api.post(URL, json={"messages": HELLO, **extra}, headers=auth(api_key))
    assert response.status_code == 400
    assert error_of(response)["param"] == param and error_of(response)["type"] == "invalid_request_error"
    assert upstream.requests == []


@pytest.mark.parametrize(
    "extra",
    [
        {"n": 1, "logprobs": False, "response_format": {"type": "text"}, "tools": [], "tool_choice": "none"},
        {"metadata": {"a": "b"}, "store": False, "service_tier": "auto", "parallel_tool_calls": True},
    ],
)
async def test_neutral_values_and_bookkeeping_fields_are_accepted(api, api_key, extra):
    response = await api.post(URL, json={"messages": HELLO, **extra}, headers=auth(api_key))
    assert response.status_code == 200


async def test_a_body_that_is_not_a_json_object_is_400(api, api_key):
    for content in (b"{not json", b"[1, 2]"):
        response = await api.post(URL, content=content, headers=auth(api_key))
        assert response.status_code == 400 and error_of(response)["type"] == "invalid_request_error"


async def test_a_body_past_the_limit_is_413(api, api_key, settings):
    settings.RANA_API_MAX_BODY_BYTES = 1000
    big = [{"role": "user", "content": "x" * 2000}]
    response = await api.post(URL, json={"messages": big}, headers=auth(api_key))
    assert response.status_code == 413 and error_of(response)["code"] == "request_too_large"


async def test_over_the_rate_limit_is_429_with_retry_after(api, main_chain):
    _, key = await gateway_key_create_async(name="slow", rpm_limit=2)
    codes = [(await api.post(URL, json={"messages": HELLO}, headers=auth(key))).status_code for _ in range(2)]
    response = await api.post(URL, json={"messages": HELLO}, headers=auth(key))
    assert codes == [200, 200] and response.status_code == 429
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert error_of(response)["code"] == "rate_limit_exceeded"


async def test_a_spent_key_budget_is_429_with_retry_after_and_no_upstream_call(api, main_chain, upstream):
    info, key = await gateway_key_create_async(name="capped", daily_budget_usd=Decimal("0.01"))
    await Completion.objects.acreate(
        created_at=timezone.now(),
        source="api",
        gateway_key_prefix=info.prefix,
        outcome="success",
        cost_usd=Decimal("0.02"),
    )
    response = await api.post(URL, json={"messages": HELLO}, headers=auth(key))
    assert response.status_code == 429 and int(response.headers["retry-after"]) > 0
    assert response.headers["x-should-retry"] == "false"
    assert error_of(response)["code"] == "budget_exceeded" and "key daily" in error_of(response)["message"]
    assert upstream.requests == []


async def test_all_providers_failing_is_502_listing_attempts_with_keys_masked(api, api_key, upstream):
    upstream.script("openai", [Fault.error("auth")], model="primary")  # the message echoes our key
    upstream.script("openai", [Fault.error("server_error")], model="backup")
    response = await api.post(URL, json={"messages": HELLO}, headers=auth(api_key))
    assert response.status_code == 502 and response.headers["x-should-retry"] == "false"
    assert STORED_KEY not in response.text
    error = error_of(response)
    assert (
        error["type"] == "upstream_error" and "primary" in error["message"] and "backup" in error["message"]
    )
    attempts = response.json()["rana"]["attempts"]
    assert [(a["outcome"], a["http_status"]) for a in attempts] == [
        ("auth_error", 401),
        ("server_error", 500),
    ]
    assert response.headers["x-rana-attempts"] == "2"


async def test_an_upstream_401_is_never_the_callers_401(api, api_key, upstream):
    upstream.set_default(Fault.error("auth"))
    response = await api.post(URL, json={"messages": HELLO}, headers=auth(api_key))
    assert response.status_code == 502 and error_of(response)["code"] == "auth_error"


async def test_an_upstream_bad_request_is_the_callers_400(api, api_key, upstream):
    upstream.script("openai", [Fault.error("bad_request")], model="primary")
    response = await api.post(URL, json={"messages": HELLO}, headers=auth(api_key))
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_request"
    assert len(upstream.requests) == 1  # the caller's fault: no fallback


async def test_the_deadline_is_504(api, provider, upstream):
    await sync(make_chain)("slow", ["hang"], provider, deadline_s=0.5, is_default=True)
    upstream.set_default(Fault.hang(), model="hang")
    _, key = await gateway_key_create_async(name="k")
    response = await api.post(URL, json={"messages": HELLO}, headers=auth(key))
    assert response.status_code == 504 and error_of(response)["code"] == "deadline_exceeded"


async def test_wrong_method_and_unknown_path_answer_in_openai_shape(api, api_key):
    response = await api.get(URL, headers=auth(api_key))
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    response = await api.post("/v1/embeddings", json={}, headers=auth(api_key))
    assert response.status_code == 404 and error_of(response)["code"] == "unknown_url"


async def test_a_host_outside_allowed_hosts_is_400(api, api_key):
    response = await api.post(
        URL, json={"messages": HELLO}, headers={**auth(api_key), "host": "evil.example"}
    )
    assert response.status_code == 400 and error_of(response)["code"] == "invalid_host"


# --- helpers ------------------------------------------------------------------------------


def sync(fn):
    from asgiref.sync import sync_to_async

    return sync_to_async(fn)


async def gateway_key_create_async(**kwargs):
    return await sync(gateway_key_create)(**kwargs)
