"""The Gemini adapter's whole chat surface against the fake upstream: tools and tool turns,
images, JSON output, thinking; function calls in answers and streams."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from providers.engine.stream import StreamTally
from providers.engine.types import (
    ChatParams,
    FailureClass,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
)
from tests.fakes import FakeToolCall, FakeUsage, Fault
from tests.fakes.wire_gemini import body_fault, chunk, function_call, stream_fault

from .adapter_calls import call, failure, text_of

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
CLOCK = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
GEMINI_WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING"}, "unit": {"type": "STRING", "enum": ["c", "f"]}},
        "required": ["city"],
    },
}
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
CALL_ID = re.compile(r"^call_[0-9a-f]{24}$")


async def sent_body(fake_upstream, http_client, make_request, **kwargs) -> dict:
    await call(make_request("gemini", **kwargs), http_client, stream=False)
    return fake_upstream.last_request.json


# --- request: tools and tool choice -----------------------------------------------------------
async def test_tools_become_function_declarations_with_a_gemini_schema(
    fake_upstream, http_client, make_request
):
    params = ChatParams(tools=(WEATHER, CLOCK), parallel_tool_calls=False)
    body = await sent_body(fake_upstream, http_client, make_request, params=params)
    assert body["tools"] == [{"functionDeclarations": [GEMINI_WEATHER, {"name": "get_time"}]}]
    assert "toolConfig" not in body and "parallel_tool_calls" not in json.dumps(body)


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("none", {"mode": "NONE"}),
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
        ),
    ],
    ids=["none", "auto", "required", "named"],
)
async def test_tool_choice_becomes_function_calling_config(
    choice, config, fake_upstream, http_client, make_request
):
    params = ChatParams(tools=(WEATHER, CLOCK), tool_choice=choice)
    body = await sent_body(fake_upstream, http_client, make_request, params=params)
    assert body["toolConfig"] == {"functionCallingConfig": config}


# --- request: tool turns ------------------------------------------------------------------
CONVERSATION = (
    Message("system", "Be brief."),
    Message("user", "Weather and time in Paris?"),
    Message(
        "assistant",
        "Checking.",
        tool_calls=(
            ToolCall("call_w", "get_weather", '{"city": "Paris"}'),
            ToolCall("call_t", "get_time", "{}"),
        ),
    ),
    Message("tool", '{"temp_c": 18}', tool_call_id="call_w"),
    Message("tool", "noon", tool_call_id="call_t"),
    Message("user", "And tomorrow?"),
)


async def test_tool_calls_and_results_become_function_call_and_response_turns(
    fake_upstream, http_client, make_request
):
    body = await sent_body(
        fake_upstream, http_client, make_request, model="gemini-2.5-flash", messages=CONVERSATION
    )
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather and time in Paris?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"result": {"temp_c": 18}}}},
                {"functionResponse": {"name": "get_time", "response": {"result": "noon"}}},
                {"text": "And tomorrow?"},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("model", "signed"),
    [
        ("gemini-3-pro-preview", True),
        ("gemini-3.1-flash", True),
        ("gemini-flash-latest", True),
        ("gemini-2.5-flash", False),
        ("models/gemini-2.0-flash", False),
    ],
)
async def test_gemini_3_replayed_calls_carry_the_documented_skip_signature(
    model, signed, fake_upstream, http_client, make_request
):
    second = Message("assistant", "", tool_calls=(ToolCall("call_x", "get_time", "{}"),))
    messages = (*CONVERSATION, second, Message("tool", "1pm", tool_call_id="call_x"))
    body = await sent_body(fake_upstream, http_client, make_request, model=model, messages=messages)
    model_turns = [c["parts"] for c in body["contents"] if c["role"] == "model"]
    signatures = [[p.get("thoughtSignature") for p in parts if "functionCall" in p] for parts in model_turns]
    expected = "skip_thought_signature_validator" if signed else None
    assert signatures == [[expected, None], [expected]]  # the first call of each model turn


async def test_a_tool_result_for_an_unknown_call_is_refused_before_any_request(
    fake_upstream, http_client, make_request
):
    messages = (Message("user", "hi"), Message("tool", "42", tool_call_id="call_nowhere"))
    error = await failure(make_request("gemini", messages=messages), http_client, stream=False)
    assert error.failure_class == FailureClass.INVALID_REQUEST
    assert "'call_nowhere' (messages[1])" in error.message and fake_upstream.requests == []


# --- request: images ------------------------------------------------------------------------
async def test_image_parts_become_inline_data_in_order(fake_upstream, http_client, make_request):
    image = ImagePart("https://img.example/cat.png", media_type="image/png", data=PIXEL)
    parts = (TextPart("What is this?"), image, TextPart("Be short."))
    messages = (Message("user", "What is this?Be short.", parts=parts),)
    body = await sent_body(fake_upstream, http_client, make_request, messages=messages)
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "What is this?"},
                {"inlineData": {"mimeType": "image/png", "data": PIXEL}},
                {"text": "Be short."},
            ],
        }
    ]


async def test_an_image_that_was_not_fetched_is_an_invalid_request(fake_upstream, http_client, make_request):
    parts = (TextPart("What is this?"), ImagePart("https://img.example/cat.png"))
    request = make_request("gemini", messages=(Message("user", "What is this?", parts=parts),))
    error = await failure(request, http_client, stream=True)
    assert error.failure_class == FailureClass.INVALID_REQUEST and "image" in error.message
    assert fake_upstream.requests == []


# --- request: JSON output and thinking --------------------------------------------------------
async def test_json_object_asks_for_a_json_mime_type(fake_upstream, http_client, make_request):
    params = ChatParams(response_format={"type": "json_object"}, temperature=0.2)
    body = await sent_body(fake_upstream, http_client, make_request, params=params)
    assert body["generationConfig"] == {"temperature": 0.2, "responseMimeType": "application/json"}


async def test_json_schema_becomes_a_response_schema_in_the_callers_property_order(
    fake_upstream, http_client, make_request
):
    schema = {
        "type": "object",
        "properties": {"temp_c": {"type": "integer", "minimum": -90}, "city": {"type": ["string", "null"]}},
        "required": ["temp_c", "city"],
        "additionalProperties": False,
    }
    params = ChatParams(
        response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": schema}}
    )
    body = await sent_body(fake_upstream, http_client, make_request, params=params)
    assert body["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "properties": {
                "temp_c": {"type": "INTEGER", "minimum": -90},
                "city": {"type": "STRING", "nullable": True},
            },
            "required": ["temp_c", "city"],
            "propertyOrdering": ["temp_c", "city"],
        },
    }


async def test_a_schema_that_only_says_object_sends_no_response_schema(
    fake_upstream, http_client, make_request
):
    params = ChatParams(
        response_format={"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}
    )
    body = await sent_body(fake_upstream, http_client, make_request, params=params)
    assert body["generationConfig"] == {"responseMimeType": "application/json"}


@pytest.mark.parametrize(
    ("effort", "model", "budget"),
    [
        ("none", "gemini-2.5-flash", 0),
        ("minimal", "gemini-2.5-flash-lite", 0),
        ("none", "gemini-2.5-pro", 128),
        ("minimal", "gemini-3-pro-preview", 128),
        ("low", "gemini-2.5-flash", 1024),
        ("medium", "gemini-2.5-pro", 8192),
        ("high", "gemini-2.5-flash", 24576),
    ],
)
async def test_reasoning_effort_becomes_a_thinking_budget(
    effort, model, budget, fake_upstream, http_client, make_request
):
    params = ChatParams(reasoning_effort=effort)
    body = await sent_body(fake_upstream, http_client, make_request, model=model, params=params)
    assert body["generationConfig"] == {"thinkingConfig": {"thinkingBudget": budget}}


async def test_no_thinking_config_for_a_model_that_does_not_reason(fake_upstream, http_client, make_request):
    request = make_request("gemini", params=ChatParams(reasoning_effort="high", max_tokens=50))
    request = replace(request, capabilities=frozenset({"tools"}))
    await call(request, http_client, stream=False)
    assert fake_upstream.last_request.json["generationConfig"] == {"maxOutputTokens": 50}


# --- responses ------------------------------------------------------------------------------
WEATHER_CALL = FakeToolCall("get_weather", {"city": "Paris"})
TIME_CALL = FakeToolCall("get_time", {"zone": "Europe/Paris"})


async def test_function_calls_come_back_as_tool_calls_with_generated_ids(
    fake_upstream, http_client, make_request
):
    answer = Fault.tool_calls(
        [WEATHER_CALL, TIME_CALL], text="Checking.", thinking="The user wants two things."
    )
    fake_upstream.script("gemini", [answer, answer])
    request = make_request("gemini", params=ChatParams(tools=(WEATHER, CLOCK)))
    response = await call(request, http_client, stream=False)
    assert (response.text, response.finish_reason) == ("Checking.", "tool_calls")
    assert [(c.name, json.loads(c.arguments)) for c in response.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"zone": "Europe/Paris"}),
    ]
    ids = [c.id for c in response.tool_calls]
    assert all(CALL_ID.match(i) for i in ids) and len(set(ids)) == 2
    again = await call(request, http_client, stream=False)  # another response: other ids
    assert not set(ids) & {c.id for c in again.tool_calls}


@pytest.mark.parametrize("response_id", ["resp-same", None])
async def test_generated_ids_are_stable_for_one_response_and_unique_within_it(
    response_id, fake_upstream, http_client, make_request
):
    calls = [function_call("get_time", {}), function_call("get_time", {})]
    body = chunk(calls, finish="STOP", usage=FakeUsage(), response_id=response_id or "")
    fake_upstream.script("gemini", [body_fault(body), body_fault(body)])
    first = [c.id for c in (await call(make_request("gemini"), http_client, stream=False)).tool_calls]
    again = [c.id for c in (await call(make_request("gemini"), http_client, stream=False)).tool_calls]
    assert len(set(first)) == 2 and all(CALL_ID.match(i) for i in first + again)
    assert (first == again) is (response_id is not None)  # without a response id: a random salt


async def test_a_call_id_sent_by_gemini_is_kept(fake_upstream, http_client, make_request):
    given = FakeToolCall("get_time", {}, id="gm-call-7")
    fake_upstream.script("gemini", [Fault.tool_calls([WEATHER_CALL, given])])
    response = await call(make_request("gemini"), http_client, stream=False)
    assert CALL_ID.match(response.tool_calls[0].id) and response.tool_calls[1].id == "gm-call-7"


async def test_a_generated_id_sent_back_recovers_its_function_name(fake_upstream, http_client, make_request):
    fake_upstream.script("gemini", [Fault.tool_calls([WEATHER_CALL]), Fault.ok("18 degrees.")])
    asked = (Message("user", "Weather in Paris?"),)
    first = await call(make_request("gemini", messages=asked), http_client, stream=False)
    (tool_call,) = first.tool_calls
    follow_up = (
        *asked,
        Message("assistant", first.text, tool_calls=first.tool_calls),
        Message("tool", '{"temp_c": 18}', tool_call_id=tool_call.id),
    )
    second = await call(make_request("gemini", messages=follow_up), http_client, stream=False)
    assert second.text == "18 degrees."
    response_part = fake_upstream.last_request.json["contents"][-1]["parts"][0]
    assert response_part == {
        "functionResponse": {"name": "get_weather", "response": {"result": {"temp_c": 18}}}
    }


async def test_thought_parts_never_reach_the_text_and_usage_counts_them(
    fake_upstream, http_client, make_request
):
    usage = FakeUsage(input=90, output=60, cached=40, reasoning=45)
    fake_upstream.script("gemini", [Fault.thinking_answer("Secret musing.", "Hello!", usage=usage)])
    response = await call(make_request("gemini"), http_client, stream=False)
    assert response.text == "Hello!" and response.tool_calls == ()
    u = response.usage
    assert (u.input_tokens, u.output_tokens, u.cached_tokens, u.reasoning_tokens) == (90, 60, 40, 45)


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_a_malformed_function_call_without_content_is_a_bad_response(
    stream, fake_upstream, http_client, make_request
):
    broken = chunk([{"text": ""}], finish="MALFORMED_FUNCTION_CALL", usage=FakeUsage())
    fake_upstream.script("gemini", [stream_fault(broken) if stream else body_fault(broken)])
    error = await failure(make_request("gemini"), http_client, stream=stream)
    assert error.failure_class == FailureClass.BAD_RESPONSE and "MALFORMED_FUNCTION_CALL" in error.message


# --- streams ----------------------------------------------------------------------------------
def tally(events) -> StreamTally:
    out = StreamTally()
    for event in events:
        out.add(event)
    return out


async def test_a_streamed_answer_with_thoughts_text_and_parallel_calls(
    fake_upstream, http_client, make_request
):
    usage = FakeUsage(input=50, output=30, cached=20, reasoning=12)
    answer = Fault.tool_calls(
        [WEATHER_CALL, TIME_CALL], text="On it.", thinking="Think hard first.", usage=usage
    )
    fake_upstream.script("gemini", [answer])
    events = await call(make_request("gemini"), http_client, stream=True)
    assert text_of(events) == "On it." and "hard" not in text_of(events)
    first_content = next(e for e in events if e.content)
    assert first_content.text == "On"  # thought events yield nothing
    deltas = [d for e in events for d in e.tool_calls]
    assert [(d.index, d.name, d.arguments) for d in deltas] == [
        (0, "get_weather", ""),
        (0, None, WEATHER_CALL.arguments),
        (1, "get_time", ""),
        (1, None, TIME_CALL.arguments),
    ]
    assert CALL_ID.match(deltas[0].id) and CALL_ID.match(deltas[2].id) and deltas[0].id != deltas[2].id
    final = events[-1]
    assert final.finish_reason == "tool_calls"
    u = final.usage
    assert (u.input_tokens, u.output_tokens, u.cached_tokens, u.reasoning_tokens) == (50, 30, 20, 12)


async def test_calls_split_across_events_are_numbered_in_order(fake_upstream, http_client, make_request):
    fake_upstream.script(
        "gemini",
        [
            stream_fault(
                chunk([{"text": "I think about it.", "thought": True}]),
                chunk([{"text": "Checking "}]),
                chunk([{"text": "both."}, function_call("get_weather", {"city": "Paris"}, signature="c2ln")]),
                chunk([function_call("get_time", {"zone": "UTC"}, id="gm-2")]),
                chunk([{"text": ""}], finish="STOP", usage=FakeUsage(input=30, output=9, reasoning=4)),
            )
        ],
    )
    events = await call(make_request("gemini"), http_client, stream=True)
    assert [bool(e.tool_calls) for e in events] == [False, True, True, False]
    assert events[1].text == "both." and text_of(events) == "Checking both."
    result = tally(events)
    assert [(c.name, json.loads(c.arguments)) for c in result.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"zone": "UTC"}),
    ]
    assert CALL_ID.match(result.tool_calls[0].id) and result.tool_calls[1].id == "gm-2"
    assert result.finish_reason == "tool_calls" and result.usage.reasoning_tokens == 4


async def test_a_stream_of_only_a_call_counts_it_as_content(fake_upstream, http_client, make_request):
    fake_upstream.script(
        "gemini", [stream_fault(chunk([function_call("get_time", {})], finish="STOP", usage=FakeUsage()))]
    )
    events = await call(make_request("gemini"), http_client, stream=True)
    assert events[0].content and events[0].text == "" and events[-1].finish_reason == "tool_calls"


async def test_a_streamed_thinking_answer_never_leaks_thoughts(fake_upstream, http_client, make_request):
    fake_upstream.script("gemini", [Fault.thinking_answer("Private chain of thought.", "Hi there.")])
    events = await call(make_request("gemini"), http_client, stream=True)
    assert text_of(events) == "Hi there." and events[-1].finish_reason == "stop"
    assert all(not e.tool_calls for e in events)
