"""Tool calling and structured outputs through the API: native on OpenAI-protocol steps; a step
whose protocol cannot carry them is skipped without a call, and a chain with no such step is a
400 naming the capability and each step's reason."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from providers.models import Attempt, ChainStep, Provider
from tests.fakes import FakeToolCall, Fault

from .conftest import STORED_KEY, auth, make_chain, sse_json

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/v1/chat/completions"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = [{"role": "user", "content": "Weather in Paris?"}]
CALL = FakeToolCall("get_weather", {"city": "Paris"}, id="call_w1")


def body(**fields) -> dict:
    return {"model": "main", "messages": ASK, "tools": [WEATHER_TOOL], **fields}


@pytest.fixture
def anthropic_provider(upstream) -> Provider:
    provider = Provider(name="claude", kind="anthropic", base_url=upstream.base_url_for("anthropic"))
    provider.set_api_key("sk-ant-" + "k" * 30)
    provider.save()
    return provider


async def test_a_tool_call_comes_back_in_openais_shape(api, api_key, upstream):
    upstream.script("openai", [Fault.tool_calls([CALL])], model="primary")
    response = await api.post(
        URL, json=body(tool_choice="auto", parallel_tool_calls=False), headers=auth(api_key)
    )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call == {
        "id": "call_w1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": CALL.arguments},
    }
    sent = upstream.requests[0].json
    assert (
        sent["tools"] == [WEATHER_TOOL]
        and sent["tool_choice"] == "auto"
        and sent["parallel_tool_calls"] is False
    )


async def test_the_tool_result_turn_reaches_the_upstream_as_sent(api, api_key, upstream):
    turns = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_w1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_w1", "content": '{"temp_c": 18}'},
    ]  # fmt: skip
    upstream.script("openai", [Fault.ok("It is 18 °C in Paris.")], model="primary")
    response = await api.post(URL, json=body(messages=turns), headers=auth(api_key))
    assert response.json()["choices"][0]["message"]["content"] == "It is 18 °C in Paris."
    sent = upstream.requests[0].json["messages"]
    assert sent[1]["tool_calls"][0]["id"] == "call_w1" and sent[1]["content"] is None
    assert sent[2] == {"role": "tool", "content": '{"temp_c": 18}', "tool_call_id": "call_w1"}


async def test_streamed_tool_calls_are_relayed_as_openai_deltas(api, api_key, upstream):
    second = FakeToolCall("get_weather", {"city": "Lyon"}, id="call_w2")
    upstream.script("openai", [Fault.tool_calls([CALL, second], arg_pieces=4)], model="primary")
    response = await api.post(URL, json=body(stream=True), headers=auth(api_key))
    assert response.status_code == 200
    calls: dict[int, dict] = {}
    finish = None
    for chunk in sse_json(response.content):
        if not chunk.get("choices"):
            continue
        choice = chunk["choices"][0]
        finish = choice["finish_reason"] or finish
        for piece in choice["delta"].get("tool_calls", []):
            call = calls.setdefault(piece["index"], {"id": None, "name": "", "arguments": ""})
            call["id"] = piece.get("id") or call["id"]
            call["name"] += piece["function"].get("name", "")
            call["arguments"] += piece["function"]["arguments"]
    assert finish == "tool_calls"
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        ("call_w1", "get_weather", {"city": "Paris"}),
        ("call_w2", "get_weather", {"city": "Lyon"}),
    ]


async def test_a_step_that_cannot_carry_tools_is_skipped_without_a_call(
    api, api_key, upstream, provider, anthropic_provider
):
    chain = await sync_to_async(make_chain)("mixed", ["claude-x"], anthropic_provider)
    await ChainStep.objects.acreate(chain=chain, position=1, provider=provider, model="backup")
    upstream.script("openai", [Fault.tool_calls([CALL])], model="backup")
    response = await api.post(URL, json=body(model="mixed"), headers=auth(api_key))
    assert response.status_code == 200, response.text
    attempts = response.json()["rana"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["capability_skipped", "success"]
    assert "tools" in attempts[0]["error"] and response.headers["x-rana-attempts"] == "1"
    assert [r.path for r in upstream.requests] == ["/v1/chat/completions"]  # nothing to Anthropic
    skipped = await Attempt.objects.aget(outcome="capability_skipped")
    assert skipped.provider_name == "claude" and "tools" in skipped.error_message


async def test_a_chain_with_no_step_that_can_is_a_400_naming_the_capability(
    api, api_key, upstream, anthropic_provider
):
    await sync_to_async(make_chain)("claude-only", ["claude-x"], anthropic_provider)
    response = await api.post(URL, json=body(model="claude-only"), headers=auth(api_key))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unsupported_capability" and "tools" in error["message"]
    assert "step 1 (claude / claude-x)" in error["message"] and STORED_KEY not in response.text
    assert upstream.requests == []


async def test_a_json_schema_response_format_is_passed_through(api, api_key, upstream):
    schema = {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True},
    }
    upstream.script("openai", [Fault.json({"city": "Paris", "temp_c": 18})], model="primary")
    response = await api.post(
        URL, json={"model": "main", "messages": ASK, "response_format": schema}, headers=auth(api_key)
    )
    assert json.loads(response.json()["choices"][0]["message"]["content"]) == {"city": "Paris", "temp_c": 18}
    assert upstream.requests[0].json["response_format"] == schema
