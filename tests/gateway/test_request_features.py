"""Request features beyond plain chat: the legacy functions / function_call spelling (answered
in the same spelling), reasoning_effort sent only to models that reason, and a chain whose
schema validation is off."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from providers.models import Attempt, Completion, FallbackChain, ModelCapability
from tests.fakes import FakeToolCall, Fault

from .conftest import auth, make_chain, sse_json

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/v1/chat/completions"
WEATHER = {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK = [{"role": "user", "content": "Weather in Paris?"}]
CALL = FakeToolCall("get_weather", {"city": "Paris"}, id="call_x")


async def post(api, api_key, **fields):
    return await api.post(URL, json={"model": "main", "messages": ASK, **fields}, headers=auth(api_key))


async def test_legacy_functions_are_sent_as_tools_and_answered_as_function_call(api, api_key, upstream):
    upstream.script("openai", [Fault.tool_calls([CALL])], model="primary")
    response = await post(api, api_key, functions=[WEATHER], function_call={"name": "get_weather"})
    assert response.status_code == 200, response.text
    sent = upstream.requests[0].json
    assert sent["tools"] == [{"type": "function", "function": WEATHER}]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["function_call"] == {"name": "get_weather", "arguments": CALL.arguments}
    assert "tool_calls" not in choice["message"]


async def test_a_legacy_function_turn_reaches_the_upstream_as_a_tool_turn(api, api_key, upstream):
    history = [
        *ASK,
        {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": "{}"}},
        {"role": "function", "name": "get_weather", "content": '{"temp_c": 18}'},
    ]
    response = await api.post(
        URL, json={"model": "main", "messages": history, "functions": [WEATHER]}, headers=auth(api_key)
    )
    assert response.status_code == 200, response.text
    _, assistant, tool = upstream.requests[0].json["messages"]
    assert assistant["tool_calls"] == [
        {"id": "call_get_weather", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    ]
    assert tool == {"role": "tool", "content": '{"temp_c": 18}', "tool_call_id": "call_get_weather"}


async def test_a_streamed_legacy_function_call_comes_as_function_call_deltas(api, api_key, upstream):
    upstream.script("openai", [Fault.tool_calls([CALL], arg_pieces=3)], model="primary")
    response = await post(api, api_key, functions=[WEATHER], stream=True)
    assert response.status_code == 200, response.text
    chunks = sse_json(response.content)
    deltas = [c["choices"][0]["delta"] for c in chunks if c.get("choices")]
    assert not any("tool_calls" in d for d in deltas)
    pieces = [d["function_call"] for d in deltas if "function_call" in d]
    assert pieces[0]["name"] == "get_weather"
    assert json.loads("".join(p["arguments"] for p in pieces)) == {"city": "Paris"}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")][-1] == "function_call"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"functions": "nope"}, "functions"),
        ({"functions": [WEATHER], "function_call": 3}, "function_call"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ],
)
async def test_bad_legacy_or_reasoning_fields_are_a_400_naming_them(api, api_key, upstream, fields, param):
    response = await post(api, api_key, **fields)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param and upstream.requests == []


async def test_reasoning_effort_goes_to_an_unlisted_model_and_not_to_one_that_cannot_reason(
    api, api_key, upstream, provider
):
    response = await post(api, api_key, reasoning_effort="high")
    assert response.status_code == 200, response.text
    assert upstream.requests[0].json["reasoning_effort"] == "high"  # "primary" is not listed

    await sync_to_async(ModelCapability.objects.create)(
        provider_kind="openai_compatible", model="plain", reasoning=False, as_of="2025-11-20"
    )
    await sync_to_async(make_chain)("plain", ["plain"], provider)
    upstream.reset()
    response = await post(api, api_key, reasoning_effort="high", model="plain")
    assert response.status_code == 200, response.text
    assert "reasoning_effort" not in upstream.requests[0].json  # a hint, dropped: never a 400


async def test_a_chain_with_validation_off_passes_an_answer_that_breaks_the_schema(api, api_key, upstream):
    await FallbackChain.objects.filter(slug="main").aupdate(validate_schema=False)
    schema = {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {"type": "object", "required": ["temp_c"]}},
    }
    upstream.script("openai", [Fault.json({"city": "Paris"})], model="primary")
    response = await post(api, api_key, response_format=schema)
    assert response.status_code == 200, response.text
    assert json.loads(response.json()["choices"][0]["message"]["content"]) == {"city": "Paris"}
    assert [a["outcome"] for a in response.json()["rana"]["attempts"]] == ["success"]


async def test_with_validation_off_an_answer_that_is_not_json_still_falls_back(api, api_key, upstream):
    await FallbackChain.objects.filter(slug="main").aupdate(validate_schema=False)
    schema = {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}}
    upstream.script("openai", [Fault.ok("not json at all")], model="primary")
    upstream.script("openai", [Fault.json({"ok": True})], model="backup")
    response = await post(api, api_key, response_format=schema)
    assert response.status_code == 200, response.text
    assert [a["outcome"] for a in response.json()["rana"]["attempts"]] == ["bad_response", "success"]


async def test_a_streamed_answer_that_breaks_the_schema_ends_in_an_error_not_a_success(
    api, api_key, upstream
):
    schema = {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {"type": "object", "required": ["temp_c"]}},
    }
    upstream.script("openai", [Fault.json({"city": "Paris"})], model="primary")
    response = await post(api, api_key, response_format=schema, stream=True)
    assert response.status_code == 200  # committed at the first token
    assert b"data: [DONE]" not in response.content
    last = sse_json(response.content)[-1]
    assert "breaks the response schema" in last["error"]["message"]
    request_id = response.headers["x-rana-request-id"]
    completion = await Completion.objects.aget(id=request_id)
    assert completion.outcome != "success"
    outcomes = [a.outcome async for a in Attempt.objects.filter(completion_id=request_id)]
    assert outcomes == ["bad_response"]
    assert [r.model for r in upstream.requests] == ["primary"]  # no fallback after the first token


async def test_a_streamed_answer_that_keeps_the_schema_is_a_success(api, api_key, upstream):
    schema = {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {"type": "object", "required": ["temp_c"]}},
    }
    upstream.script("openai", [Fault.json({"temp_c": 18})], model="primary")
    response = await post(api, api_key, response_format=schema, stream=True)
    assert response.content.endswith(b"data: [DONE]\n\n")
    text = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in sse_json(response.content) if c.get("choices")
    )
    assert json.loads(text) == {"temp_c": 18}


async def test_n_choices_come_back_from_an_openai_step(api, api_key, upstream):
    response = await post(api, api_key, n=3)
    assert response.status_code == 200, response.text
    assert upstream.requests[0].json["n"] == 3
    choices = response.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    assert choices[1]["message"]["content"].endswith("(choice 1)")
    assert all(c["finish_reason"] == "stop" for c in choices)


async def test_logprobs_are_relayed_streamed_and_not(api, api_key, upstream):
    response = await post(api, api_key, logprobs=True, top_logprobs=2)
    assert response.status_code == 200, response.text
    sent = upstream.requests[0].json
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)
    content = response.json()["choices"][0]["logprobs"]["content"]
    assert content[0]["token"] == "Hello" and len(content[0]["top_logprobs"]) == 2
    response = await post(api, api_key, logprobs=True, stream=True)
    chunks = [
        c for c in sse_json(response.content) if c.get("choices") and c["choices"][0]["delta"].get("content")
    ]
    assert chunks and all(c["choices"][0]["logprobs"]["content"][0]["token"] for c in chunks)


async def test_a_step_that_cannot_give_n_or_logprobs_is_skipped(api, api_key, upstream):
    from .test_tools import provider_on_the_fake

    claude = await sync_to_async(provider_on_the_fake)(
        upstream, name="claude", kind="anthropic", key="sk-ant-" + "k" * 30
    )
    await sync_to_async(make_chain)("claude-n", ["claude-x"], claude)
    for fields in ({"n": 2}, {"logprobs": True}):
        response = await post(api, api_key, model="claude-n", **fields)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "unsupported_capability"
    assert upstream.requests == []


async def test_a_refusal_is_an_answer_with_message_refusal(api, api_key, upstream):
    upstream.script("openai", [Fault.refused("I can't help with that.")], model="primary")
    response = await post(api, api_key)
    assert response.status_code == 200, response.text
    message = response.json()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    assert [a["outcome"] for a in response.json()["rana"]["attempts"]] == ["success"]


async def test_a_refusal_to_a_json_schema_is_not_a_bad_response(api, api_key, upstream):
    schema = {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}}
    upstream.script("openai", [Fault.refused("No.")], model="primary")
    response = await post(api, api_key, response_format=schema)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["refusal"] == "No."
    assert [r.model for r in upstream.requests] == ["primary"]


async def test_a_refusal_falls_back_when_the_chain_says_so(api, api_key, upstream):
    await FallbackChain.objects.filter(slug="main").aupdate(content_filter_policy="fallback")
    upstream.script("openai", [Fault.refused("No.")], model="primary")
    response = await post(api, api_key)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["refusal"] is None
    outcomes = [a["outcome"] for a in response.json()["rana"]["attempts"]]
    assert outcomes == ["content_filter", "success"]


async def test_a_streamed_refusal_comes_as_refusal_deltas(api, api_key, upstream):
    upstream.script("openai", [Fault.refused("I can't help with that.")], model="primary")
    response = await post(api, api_key, stream=True)
    assert response.status_code == 200, response.text
    assert response.content.endswith(b"data: [DONE]\n\n")
    chunks = [c for c in sse_json(response.content) if c.get("choices")]
    refusal = "".join(c["choices"][0]["delta"].get("refusal") or "" for c in chunks)
    assert refusal == "I can't help with that."
