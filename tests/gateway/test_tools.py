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
# Gemini carries tools, but its Schema has no patternProperties: such a step is skipped.
MAP_TOOL = {
    "type": "function",
    "function": {
        "name": "tag",
        "parameters": {
            "type": "object",
            "properties": {"tags": {"type": "object", "patternProperties": {"^x-": {"type": "string"}}}},
        },
    },
}
GEMINI_REFUSAL = (
    "cannot take JSON Schema keyword 'patternProperties' (tools[0].function.parameters.properties.tags)"
)
CALL = FakeToolCall("get_weather", {"city": "Paris"}, id="call_w1")


def reassembled(stream: bytes) -> tuple[dict[int, dict], str | None]:
    """Streamed tool-call deltas put back together, as an SDK does: by index."""
    calls: dict[int, dict] = {}
    finish = None
    for chunk in sse_json(stream):
        for choice in chunk.get("choices", []):
            finish = choice["finish_reason"] or finish
            for piece in choice["delta"].get("tool_calls", []):
                call = calls.setdefault(piece["index"], {"id": None, "name": "", "arguments": ""})
                call["id"] = piece.get("id") or call["id"]
                call["name"] += piece["function"].get("name", "")
                call["arguments"] += piece["function"]["arguments"]
    return calls, finish


def body(**fields) -> dict:
    return {"model": "main", "messages": ASK, "tools": [WEATHER_TOOL], **fields}


def provider_on_the_fake(upstream, *, name: str, kind: str, key: str) -> Provider:
    provider = Provider(name=name, kind=kind, base_url=upstream.base_url_for(kind))
    provider.set_api_key(key)
    provider.save()
    return provider


@pytest.fixture
def gemini_provider(upstream) -> Provider:
    return provider_on_the_fake(upstream, name="gem", kind="gemini", key="AIza" + "g" * 35)


@pytest.fixture
def anthropic_provider(upstream) -> Provider:
    return provider_on_the_fake(upstream, name="claude", kind="anthropic", key="sk-ant-" + "k" * 30)


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
    calls, finish = reassembled(response.content)
    assert finish == "tool_calls"
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        ("call_w1", "get_weather", {"city": "Paris"}),
        ("call_w2", "get_weather", {"city": "Lyon"}),
    ]


async def test_a_step_that_cannot_carry_tools_is_skipped_without_a_call(
    api, api_key, upstream, provider, gemini_provider
):
    chain = await sync_to_async(make_chain)("mixed", ["gemini-x"], gemini_provider)
    await ChainStep.objects.acreate(chain=chain, position=1, provider=provider, model="backup")
    upstream.script("openai", [Fault.tool_calls([CALL])], model="backup")
    response = await api.post(URL, json=body(model="mixed", tools=[MAP_TOOL]), headers=auth(api_key))
    assert response.status_code == 200, response.text
    attempts = response.json()["rana"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["capability_skipped", "success"]
    assert GEMINI_REFUSAL in attempts[0]["error"] and response.headers["x-rana-attempts"] == "1"
    assert [r.path for r in upstream.requests] == ["/v1/chat/completions"]  # nothing to Gemini
    skipped = await Attempt.objects.aget(outcome="capability_skipped")
    assert skipped.provider_name == "gem" and GEMINI_REFUSAL in skipped.error_message


async def test_a_chain_with_no_step_that_can_is_a_400_naming_the_capability(
    api, api_key, upstream, gemini_provider, anthropic_provider
):
    await sync_to_async(make_chain)("gemini-only", ["gemini-x"], gemini_provider)
    response = await api.post(URL, json=body(model="gemini-only", tools=[MAP_TOOL]), headers=auth(api_key))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unsupported_capability" and GEMINI_REFUSAL in error["message"]
    assert "step 1 (gem / gemini-x)" in error["message"] and STORED_KEY not in response.text
    assert upstream.requests == []


# --- Anthropic: tools translated to and from the Messages format -------------------------
@pytest.fixture
async def claude(anthropic_provider):
    await sync_to_async(make_chain)("claude-only", ["claude-x"], anthropic_provider)


async def test_anthropic_tool_use_comes_back_as_openai_tool_calls(api, api_key, upstream, claude):
    upstream.script("anthropic", [Fault.tool_calls([CALL], text="Let me look.")], model="claude-x")
    response = await api.post(
        URL,
        json=body(model="claude-only", tool_choice="required", parallel_tool_calls=False),
        headers=auth(api_key),
    )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] == "Let me look."
    [call] = choice["message"]["tool_calls"]
    assert (call["id"], call["function"]["name"]) == ("call_w1", "get_weather")
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    sent = upstream.requests[0].json
    assert sent["tools"] == [
        {"name": "get_weather", "input_schema": WEATHER_TOOL["function"]["parameters"],
         "description": "The weather in a city"}
    ]  # fmt: skip
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


async def test_anthropic_streamed_tool_use_is_relayed_as_openai_deltas(api, api_key, upstream, claude):
    second = FakeToolCall("get_weather", {"city": "Lyon"}, id="call_w2")
    upstream.script("anthropic", [Fault.tool_calls([CALL, second], arg_pieces=4)], model="claude-x")
    response = await api.post(URL, json=body(model="claude-only", stream=True), headers=auth(api_key))
    assert response.status_code == 200
    calls, finish = reassembled(response.content)
    assert finish == "tool_calls"
    assert [(c["id"], json.loads(c["arguments"])) for c in calls.values()] == [
        ("call_w1", {"city": "Paris"}),
        ("call_w2", {"city": "Lyon"}),
    ]


async def test_tool_results_reach_anthropic_as_tool_result_blocks_in_one_user_turn(
    api, api_key, upstream, claude
):
    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    turns = [
        *ASK,
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "toolu_1", **call}, {"id": "toolu_2", **call}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "19"},
    ]  # fmt: skip
    upstream.script("anthropic", [Fault.ok("Both 18 and 19.")], model="claude-x")
    response = await api.post(URL, json=body(model="claude-only", messages=turns), headers=auth(api_key))
    assert response.json()["choices"][0]["message"]["content"] == "Both 18 and 19."
    sent = upstream.requests[0].json["messages"]
    assert [t["role"] for t in sent] == ["user", "assistant", "user"]
    assert [b["type"] for b in sent[1]["content"]] == ["tool_use", "tool_use"]
    assert sent[1]["content"][0]["input"] == {"city": "Paris"}
    assert sent[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "19"},
    ]


async def test_a_json_schema_reaches_anthropic_as_a_forced_tool_and_comes_back_as_content(
    api, api_key, upstream, claude
):
    schema = {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {"type": "object", "required": ["temp_c"]}},
    }
    answer = Fault.json({"temp_c": 18}, as_tool="json_answer")
    upstream.script("anthropic", [answer], model="claude-x")
    response = await api.post(
        URL, json={"model": "claude-only", "messages": ASK, "response_format": schema}, headers=auth(api_key)
    )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert json.loads(choice["message"]["content"]) == {"temp_c": 18} and choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"] or not choice["message"]["tool_calls"]
    sent = upstream.requests[0].json
    assert sent["tools"][0]["input_schema"] == schema["json_schema"]["schema"]
    assert sent["tool_choice"] == {"type": "tool", "name": "json_answer"}


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


async def test_an_answer_that_breaks_the_schema_falls_back(api, api_key, upstream):
    schema = {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {"type": "object", "required": ["temp_c"]}},
    }
    upstream.script("openai", [Fault.json({"city": "Paris"})], model="primary")
    upstream.script("openai", [Fault.json({"temp_c": 18})], model="backup")
    response = await api.post(
        URL, json={"model": "main", "messages": ASK, "response_format": schema}, headers=auth(api_key)
    )
    assert json.loads(response.json()["choices"][0]["message"]["content"]) == {"temp_c": 18}
    attempts = response.json()["rana"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["bad_response", "success"]
    assert "schema" in attempts[0]["error"] and response.headers["x-rana-fallback"] == "true"
