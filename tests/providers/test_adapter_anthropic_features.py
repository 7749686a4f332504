"""The Anthropic adapter's whole chat surface against the fake upstream: JSON output (structured
outputs or a forced answer tool), extended thinking, images, tools without arguments."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from providers.adapters.anthropic import AnthropicAdapter
from providers.adapters.anthropic_json import ANSWER_TOOL, STRUCTURED_OUTPUTS_BETA
from providers.adapters.registry import get_adapter
from providers.engine.clock import FakeClock
from providers.engine.fallback import EngineDeps, run
from providers.engine.plan import ChainPlan, StepPlan
from providers.engine.results import AllProvidersFailed
from providers.engine.types import (
    CAPABILITIES,
    ChatParams,
    ImagePart,
    Message,
    ProviderConfig,
    StreamEvent,
    TextPart,
    ToolCall,
)
from tests.fakes import FakeToolCall, FakeUsage, Fault
from tests.fakes import wire_anthropic as wa
from tests.fakes.probe import anthropic_assemble, ask, sse_events

from .adapter_calls import call, text_of
from .conftest import TEST_KEYS

PERSON = {"name": "Ada", "age": 36, "languages": ["en", "fr"]}
PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Full name"},
        "age": {"type": "integer"},
        "languages": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age"],
}
AS_SCHEMA = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON_SCHEMA}}
AS_OBJECT = {"type": "json_object"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
NATIVE = {"structured_outputs": True}
THOUGHT = "The user wants a person. Ada Lovelace fits."
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def tool_calls_of(events: list[StreamEvent]) -> list[tuple[str | None, str | None, str]]:
    """Streamed tool-call deltas put back together by index: (id, name, arguments)."""
    calls: dict[int, list] = {}
    for event in events:
        for piece in event.tool_calls:
            whole = calls.setdefault(piece.index, [None, None, ""])
            whole[0] = piece.id or whole[0]
            whole[1] = piece.name or whole[1]
            whole[2] += piece.arguments
    return [tuple(calls[i]) for i in sorted(calls)]


def test_the_adapter_declares_every_capability_and_takes_images_by_url():
    adapter = get_adapter("anthropic")
    assert isinstance(adapter, AnthropicAdapter)
    assert adapter.capabilities == frozenset(CAPABILITIES)
    assert getattr(adapter, "inline_images", False) is False


# --- JSON output: structured outputs ------------------------------------------------------
async def test_structured_outputs_send_output_format_and_the_beta_header(
    fake_upstream, http_client, make_request
):
    fake_upstream.script("anthropic", [Fault.json(PERSON)])
    request = make_request("anthropic", params=ChatParams(response_format=AS_SCHEMA), options=NATIVE)
    response = await call(request, http_client, stream=False)
    sent = fake_upstream.last_request
    assert sent.headers["anthropic-beta"] == STRUCTURED_OUTPUTS_BETA
    assert sent.json["output_format"] == {
        "type": "json_schema",
        "schema": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "Full name"},
                "age": {"type": "integer"},
                "languages": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["name", "age"],
            "additionalProperties": False,
        },
    }
    assert "tools" not in sent.json and "tool_choice" not in sent.json
    assert json.loads(response.text) == PERSON and response.finish_reason == "stop"
    assert response.tool_calls == ()


async def test_structured_outputs_keep_real_tools_and_their_choice(fake_upstream, http_client, make_request):
    params = ChatParams(response_format=AS_SCHEMA, tools=(WEATHER,), tool_choice="auto")
    await call(make_request("anthropic", params=params, options=NATIVE), http_client, stream=False)
    sent = fake_upstream.last_request.json
    assert [t["name"] for t in sent["tools"]] == ["get_weather"]
    assert sent["tool_choice"] == {"type": "auto"} and sent["output_format"]["type"] == "json_schema"


async def test_structured_outputs_stream_the_json_as_text(fake_upstream, http_client, make_request):
    fake_upstream.script("anthropic", [Fault.json(PERSON, arg_pieces=5)])
    request = make_request("anthropic", params=ChatParams(response_format=AS_SCHEMA), options=NATIVE)
    events = await call(request, http_client, stream=True)
    assert len([e for e in events if e.text]) == 5
    assert json.loads(text_of(events)) == PERSON and events[-1].finish_reason == "stop"


@pytest.mark.parametrize(
    ("response_format", "why"),
    [
        (AS_OBJECT, "json_object: a free-form object"),
        (
            {
                "type": "json_schema",
                "json_schema": {
                    "schema": {**PERSON_SCHEMA, "properties": {"age": {"type": "integer", "minimum": 0}}}
                },
            },
            "a numeric bound",
        ),
        (
            {
                "type": "json_schema",
                "json_schema": {
                    "schema": {
                        "type": "object",
                        "properties": {"node": {"$ref": "#/$defs/Node"}},
                        "$defs": {
                            "Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}
                        },
                    }
                },
            },
            "a recursive schema",
        ),
        ({"type": "json_schema", "json_schema": {"schema": {"type": "array"}}}, "a root that is no object"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
async def test_schemas_structured_outputs_cannot_carry_use_the_forced_tool(
    response_format, why, fake_upstream, http_client, make_request
):
    request = make_request("anthropic", params=ChatParams(response_format=response_format), options=NATIVE)
    await call(request, http_client, stream=False)
    sent = fake_upstream.last_request
    assert "output_format" not in sent.json and "anthropic-beta" not in sent.headers, why
    assert sent.json["tool_choice"] == {"type": "tool", "name": ANSWER_TOOL}


async def test_structured_outputs_accept_non_recursive_defs_and_drop_annotations(
    fake_upstream, http_client, make_request
):
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"owner": {"$ref": "#/$defs/Person"}, "tags": {"type": "array", "default": []}},
        "$defs": {
            "Person": {"type": "object", "title": "Person", "properties": {"name": {"type": "string"}}}
        },
    }
    params = ChatParams(response_format={"type": "json_schema", "json_schema": {"schema": schema}})
    await call(make_request("anthropic", params=params, options=NATIVE), http_client, stream=False)
    assert fake_upstream.last_request.json["output_format"]["schema"] == {
        "type": "object",
        "properties": {"owner": {"$ref": "#/$defs/Person"}, "tags": {"type": "array"}},
        "$defs": {
            "Person": {
                "type": "object",
                "title": "Person",
                "properties": {"name": {"type": "string"}},
                "additionalProperties": False,
            }
        },
        "additionalProperties": False,
    }


# --- JSON output: the forced answer tool --------------------------------------------------
async def test_json_schema_without_structured_outputs_is_a_forced_answer_tool(
    fake_upstream, http_client, make_request
):
    fake_upstream.script("anthropic", [Fault.json(PERSON, as_tool=ANSWER_TOOL)])
    request = make_request("anthropic", params=ChatParams(response_format=AS_SCHEMA))
    response = await call(request, http_client, stream=False)
    sent = fake_upstream.last_request
    assert "anthropic-beta" not in sent.headers and "output_format" not in sent.json
    [tool] = sent.json["tools"]
    assert tool["name"] == ANSWER_TOOL and tool["input_schema"] == PERSON_SCHEMA and tool["description"]
    assert sent.json["tool_choice"] == {"type": "tool", "name": ANSWER_TOOL}
    assert response.text == json.dumps(PERSON, separators=(",", ":"))
    assert response.finish_reason == "stop" and response.tool_calls == ()


async def test_json_object_is_an_answer_tool_taking_any_object(fake_upstream, http_client, make_request):
    fake_upstream.script("anthropic", [Fault.json({"ok": True}, as_tool=ANSWER_TOOL)])
    request = make_request("anthropic", params=ChatParams(response_format=AS_OBJECT))
    response = await call(request, http_client, stream=False)
    [tool] = fake_upstream.last_request.json["tools"]
    assert tool["input_schema"] == {"type": "object"}
    assert response.text == '{"ok":true}' and response.finish_reason == "stop"


async def test_the_answer_tool_streams_as_text_split_across_many_fragments(
    fake_upstream, http_client, make_request
):
    fake_upstream.script("anthropic", [Fault.json(PERSON, as_tool=ANSWER_TOOL, arg_pieces=9)])
    request = make_request("anthropic", params=ChatParams(response_format=AS_SCHEMA))
    events = await call(request, http_client, stream=True)
    texts = [e.text for e in events if e.text]
    assert len(texts) == 9 and "".join(texts) == json.dumps(PERSON)
    assert all(not e.tool_calls for e in events)
    assert events[-1].finish_reason == "stop" and events[-1].usage.output_tokens == 7


async def test_a_schema_whose_root_is_no_object_is_wrapped_and_unwrapped(
    fake_upstream, http_client, make_request
):
    schema = {"type": "array", "items": {"$ref": "#/$defs/Tag"}, "$defs": {"Tag": {"type": "string"}}}
    params = ChatParams(response_format={"type": "json_schema", "json_schema": {"schema": schema}})
    fake_upstream.script("anthropic", [Fault.json({"value": ["a", "b"]}, as_tool=ANSWER_TOOL)] * 2)
    response = await call(make_request("anthropic", params=params), http_client, stream=False)
    assert fake_upstream.last_request.json["tools"][0]["input_schema"] == {
        "type": "object",
        "properties": {"value": {"type": "array", "items": {"$ref": "#/$defs/Tag"}}},
        "required": ["value"],
        "$defs": {"Tag": {"type": "string"}},
    }
    assert response.text == '["a","b"]'
    events = await call(make_request("anthropic", params=params), http_client, stream=True)
    assert text_of(events) == '["a","b"]' and events[-1].finish_reason == "stop"


async def test_real_tools_and_the_answer_tool_side_by_side_with_tool_choice_any(
    fake_upstream, http_client, make_request
):
    params = ChatParams(response_format=AS_SCHEMA, tools=(WEATHER,), parallel_tool_calls=False)
    await call(make_request("anthropic", params=params), http_client, stream=False)
    sent = fake_upstream.last_request.json
    assert [t["name"] for t in sent["tools"]] == ["get_weather", ANSWER_TOOL]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


@pytest.mark.parametrize(
    ("choice", "tools", "expected"),
    [
        ("none", ["get_weather", ANSWER_TOOL], {"type": "tool", "name": ANSWER_TOOL}),
        ("required", ["get_weather"], {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            ["get_weather"],
            {"type": "tool", "name": "get_weather"},
        ),
    ],
    ids=["none", "required", "named"],
)
async def test_tool_choice_decides_whether_the_answer_tool_is_offered(
    choice, tools, expected, fake_upstream, http_client, make_request
):
    params = ChatParams(response_format=AS_SCHEMA, tools=(WEATHER,), tool_choice=choice)
    await call(make_request("anthropic", params=params), http_client, stream=False)
    sent = fake_upstream.last_request.json
    assert [t["name"] for t in sent["tools"]] == tools and sent["tool_choice"] == expected


async def test_the_answer_tool_never_collides_with_a_real_tool(fake_upstream, http_client, make_request):
    same = {"type": "function", "function": {"name": ANSWER_TOOL, "parameters": {"type": "object"}}}
    fake_upstream.script(
        "anthropic", [Fault.tool_calls([FakeToolCall(ANSWER_TOOL, {"x": 1})])], model="first"
    )
    fake_upstream.script("anthropic", [Fault.json(PERSON, as_tool=ANSWER_TOOL + "_")], model="second")
    params = ChatParams(response_format=AS_SCHEMA, tools=(same,))
    first = await call(make_request("anthropic", model="first", params=params), http_client, stream=False)
    assert [t["name"] for t in fake_upstream.last_request.json["tools"]] == [ANSWER_TOOL, ANSWER_TOOL + "_"]
    assert [(c.name, c.arguments) for c in first.tool_calls] == [(ANSWER_TOOL, '{"x": 1}')]
    second = await call(make_request("anthropic", model="second", params=params), http_client, stream=False)
    assert json.loads(second.text) == PERSON and second.tool_calls == ()


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_with_real_tools_a_real_call_is_a_tool_call_and_the_answer_is_text(
    stream, fake_upstream, http_client, make_request
):
    weather = FakeToolCall("get_weather", {"city": "Paris"}, id="toolu_w1")
    fake_upstream.script(
        "anthropic",
        [Fault.tool_calls([weather], arg_pieces=4), Fault.json(PERSON, as_tool=ANSWER_TOOL, arg_pieces=4)],
    )
    request = make_request("anthropic", params=ChatParams(response_format=AS_SCHEMA, tools=(WEATHER,)))
    called, answered = (
        await call(request, http_client, stream=stream),
        await call(request, http_client, stream=stream),
    )
    if stream:
        assert tool_calls_of(called) == [("toolu_w1", "get_weather", '{"city": "Paris"}')]
        assert text_of(called) == "" and called[-1].finish_reason == "tool_calls"
        assert tool_calls_of(answered) == [] and json.loads(text_of(answered)) == PERSON
        assert answered[-1].finish_reason == "stop"
    else:
        assert [(c.id, c.name, c.arguments) for c in called.tool_calls] == [
            ("toolu_w1", "get_weather", '{"city": "Paris"}')
        ]
        assert called.text == "" and called.finish_reason == "tool_calls"
        assert answered.tool_calls == () and json.loads(answered.text) == PERSON
        assert answered.finish_reason == "stop"


# --- extended thinking -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("effort", "budget"), [("minimal", 1024), ("low", 1024), ("medium", 4096), ("high", 16384)]
)
async def test_reasoning_effort_becomes_a_thinking_budget_on_top_of_max_tokens(
    effort, budget, fake_upstream, http_client, make_request
):
    params = ChatParams(reasoning_effort=effort, max_tokens=1000, temperature=0.2, top_p=0.9, stop=("END",))
    await call(make_request("anthropic", params=params), http_client, stream=False)
    sent = fake_upstream.last_request.json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert sent["max_tokens"] == budget + 1000 and sent["max_tokens"] > budget
    assert "temperature" not in sent and "top_p" not in sent and "top_k" not in sent
    assert sent["stop_sequences"] == ["END"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [({}, 4096 + 4096), ({"max_tokens": 2000}, 4096 + 2000)],
    ids=["default", "option"],
)
async def test_without_max_tokens_the_budget_adds_to_the_default(
    options, expected, fake_upstream, http_client, make_request
):
    params = ChatParams(reasoning_effort="medium")
    await call(make_request("anthropic", params=params, options=options), http_client, stream=False)
    assert fake_upstream.last_request.json["max_tokens"] == expected


@pytest.mark.parametrize(
    "case",
    ["effort none", "model without reasoning", "forced answer tool", "required tool", "named tool"],
)
async def test_thinking_stays_off(case, fake_upstream, http_client, make_request):
    params = ChatParams(reasoning_effort="high", temperature=0.3, max_tokens=500)
    request = make_request("anthropic", params=params)
    if case == "effort none":
        request = replace(request, params=replace(params, reasoning_effort="none"))
    elif case == "model without reasoning":
        request = replace(request, capabilities=frozenset({"tools", "images"}))
    elif case == "forced answer tool":
        request = replace(request, params=replace(params, response_format=AS_SCHEMA))
    else:
        named = {"type": "function", "function": {"name": "get_weather"}}
        choice = "required" if case == "required tool" else named
        request = replace(request, params=replace(params, tools=(WEATHER,), tool_choice=choice))
    await call(request, http_client, stream=False)
    sent = fake_upstream.last_request.json
    assert "thinking" not in sent and sent["max_tokens"] == 500 and sent["temperature"] == 0.3


async def test_thinking_stays_on_with_structured_outputs_and_with_a_listed_reasoning_model(
    fake_upstream, http_client, make_request
):
    params = ChatParams(reasoning_effort="low", response_format=AS_SCHEMA, tools=(WEATHER,))
    request = make_request("anthropic", params=params, options=NATIVE)
    await call(replace(request, capabilities=frozenset({"tools", "reasoning"})), http_client, stream=False)
    sent = fake_upstream.last_request.json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024} and "output_format" in sent


LOOP = (
    Message("user", "Weather in Paris?"),
    Message("assistant", "", tool_calls=(ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),)),
    Message("tool", "18", tool_call_id="toolu_1"),
)


async def test_thinking_is_off_while_the_last_assistant_turn_called_tools(
    fake_upstream, http_client, make_request
):
    params = ChatParams(reasoning_effort="high", tools=(WEATHER,), temperature=0.5)
    await call(make_request("anthropic", messages=LOOP, params=params), http_client, stream=False)
    sent = fake_upstream.last_request.json
    assert "thinking" not in sent and sent["temperature"] == 0.5 and sent["max_tokens"] == 4096
    assert [b["type"] for b in sent["messages"][1]["content"]] == ["tool_use"]

    done = (*LOOP, Message("assistant", "It is 18 °C."), Message("user", "And tomorrow?"))
    await call(make_request("anthropic", messages=done, params=params), http_client, stream=False)
    sent = fake_upstream.last_request.json
    assert sent["thinking"]["budget_tokens"] == 16384 and "temperature" not in sent


async def test_thinking_never_reaches_the_answer_text(fake_upstream, http_client, make_request):
    usage = FakeUsage(input=30, output=50)
    fake_upstream.script("anthropic", [Fault.thinking_answer(THOUGHT, "Hello there!", usage=usage)] * 2)
    request = make_request("anthropic", params=ChatParams(reasoning_effort="medium"))
    response = await call(request, http_client, stream=False)
    assert response.text == "Hello there!" and response.finish_reason == "stop"
    assert (response.usage.output_tokens, response.usage.reasoning_tokens) == (50, 0)
    events = await call(request, http_client, stream=True)
    assert text_of(events) == "Hello there!"
    assert all("user wants" not in e.text for e in events) and all(not e.tool_calls for e in events)
    assert events[-1].usage.output_tokens == 50


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_redacted_thinking_and_signatures_never_reach_the_answer(
    stream, fake_upstream, http_client, make_request
):
    blocks = [
        wa.redacted("RW5jcnlwdGVkUmVhc29uaW5n"),
        wa.thinking(THOUGHT, "c2lnbmVk"),
        wa.text("Done here."),
    ]
    fault = wa.stream_fault(blocks) if stream else wa.body_fault(blocks)
    fake_upstream.script("anthropic", [fault])
    result = await call(make_request("anthropic"), http_client, stream=stream)
    text = text_of(result) if stream else result.text
    assert text == "Done here."


async def test_thinking_then_a_json_answer_with_structured_outputs(fake_upstream, http_client, make_request):
    fake_upstream.script("anthropic", [Fault.json(PERSON, thinking=THOUGHT, arg_pieces=3)] * 2)
    params = ChatParams(response_format=AS_SCHEMA, reasoning_effort="low")
    request = make_request("anthropic", params=params, options=NATIVE)
    assert json.loads((await call(request, http_client, stream=False)).text) == PERSON
    assert json.loads(text_of(await call(request, http_client, stream=True))) == PERSON


# --- images --------------------------------------------------------------------------------
PICTURE = Message(
    "user",
    "Compare these.",
    parts=(
        TextPart("Compare these."),
        ImagePart("https://images.example/cat.jpg", detail="high"),
        TextPart(""),
        ImagePart(f"data:image/png;base64,{PNG}", media_type="image/png", data=PNG),
    ),
)
PICTURE_BLOCKS = [
    {"type": "text", "text": "Compare these."},
    {"type": "image", "source": {"type": "url", "url": "https://images.example/cat.jpg"}},
    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
]


async def test_images_become_url_and_base64_blocks_in_order(fake_upstream, http_client, make_request):
    messages = (Message("system", "Be brief."), Message("assistant", "Send them."), PICTURE)
    await call(make_request("anthropic", messages=messages), http_client, stream=False)
    sent = fake_upstream.last_request.json
    assert sent["system"] == "Be brief."
    assert sent["messages"] == [
        {"role": "assistant", "content": [{"type": "text", "text": "Send them."}]},
        {"role": "user", "content": PICTURE_BLOCKS},
    ]


async def test_images_with_tools_use_the_same_blocks(fake_upstream, http_client, make_request):
    messages = (*LOOP, Message("assistant", "18 °C."), PICTURE)
    params = ChatParams(tools=(WEATHER,))
    await call(make_request("anthropic", messages=messages, params=params), http_client, stream=False)
    sent = fake_upstream.last_request.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user", "assistant", "user"]
    assert sent[2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18"}]
    assert sent[4]["content"] == PICTURE_BLOCKS


# --- tools without arguments -------------------------------------------------------------
@pytest.mark.parametrize(
    "fault",
    [
        Fault.tool_calls([FakeToolCall("get_time", "", id="toolu_t1")]),  # only empty partial_json
        wa.stream_fault([wa.tool_use("get_time", fragments=())], stop_reason="tool_use"),  # no delta at all
    ],
    ids=["empty-fragments", "no-fragment"],
)
async def test_a_streamed_tool_without_arguments_gets_an_empty_object(
    fault, fake_upstream, http_client, make_request
):
    fake_upstream.script("anthropic", [fault])
    request = make_request("anthropic", params=ChatParams(tools=(WEATHER,)))
    events = await call(request, http_client, stream=True)
    [(_, name, arguments)] = tool_calls_of(events)
    assert (name, arguments) == ("get_time", "{}") and events[-1].finish_reason == "tool_calls"


async def test_streamed_arguments_are_never_padded_and_calls_stay_apart(
    fake_upstream, http_client, make_request
):
    blocks = [
        wa.text("Checking."),
        wa.tool_use("get_time", fragments=("",)),
        wa.tool_use("get_weather", {"city": "Oslo"}),
    ]
    fake_upstream.script("anthropic", [wa.stream_fault(blocks, stop_reason="tool_use")])
    events = await call(
        make_request("anthropic", params=ChatParams(tools=(WEATHER,))), http_client, stream=True
    )
    assert [(n, a) for _, n, a in tool_calls_of(events)] == [
        ("get_time", "{}"),
        ("get_weather", '{"city": "Oslo"}'),
    ]
    assert text_of(events) == "Checking."


async def test_a_non_streamed_tool_without_arguments_has_an_empty_object(
    fake_upstream, http_client, make_request
):
    fake_upstream.script("anthropic", [wa.body_fault([wa.tool_use("get_time")], stop_reason="tool_use")])
    response = await call(
        make_request("anthropic", params=ChatParams(tools=(WEATHER,))), http_client, stream=False
    )
    assert [(c.name, c.arguments) for c in response.tool_calls] == [("get_time", "{}")]


def test_the_raw_block_stream_is_anthropics_shape(fake_upstream):
    blocks = [wa.redacted("ZGF0YQ=="), wa.tool_use("f", {"x": 1}), wa.tool_use("g", fragments=())]
    fake_upstream.script("anthropic", [wa.stream_fault(blocks, stop_reason="tool_use")])
    response = ask(fake_upstream, "anthropic", stream=True)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    assert all(name == data["type"] for name, data in events)
    assert [d["type"] for _, d in events if d.get("index") == 2] == [
        "content_block_start",
        "content_block_stop",
    ]
    assembled, stop = anthropic_assemble(events)
    assert assembled[0] == {"type": "redacted_thinking", "data": "ZGF0YQ=="}
    assert (assembled[1]["name"], assembled[1]["input"], stop) == ("f", {"x": 1}, "tool_use")
    fake_upstream.script("anthropic", [wa.body_fault(blocks[:1], stop_reason="end_turn")])
    assert ask(fake_upstream, "anthropic").json()["content"] == [
        {"type": "redacted_thinking", "data": "ZGF0YQ=="}
    ]


# --- the engine: a JSON answer that breaks its schema ---------------------------------------
def anthropic_step(position: int, base_url: str, model: str) -> StepPlan:
    provider = ProviderConfig(
        id=position + 1,
        name=f"claude-{position}",
        kind="anthropic",
        base_url=base_url,
        api_key=TEST_KEYS["anthropic"],
    )
    return StepPlan(
        position=position, provider=provider, model=model, retries=0, timeout_s=5.0, backoff_base_s=0.1
    )


async def test_an_anthropic_json_answer_that_breaks_the_schema_is_a_bad_response(fake_upstream, http_client):
    fake_upstream.script(
        "anthropic", [Fault.json({"name": "Ada", "age": "old"}, as_tool=ANSWER_TOOL)], model="a"
    )
    fake_upstream.script("anthropic", [Fault.json(PERSON, as_tool=ANSWER_TOOL)], model="b")
    base = fake_upstream.base_url_for("anthropic")
    plan = ChainPlan(slug="c", steps=(anthropic_step(0, base, "a"), anthropic_step(1, base, "b")))
    deps = EngineDeps(adapter_for=get_adapter, client=http_client, clock=FakeClock())
    result = await run(plan, (Message("user", "Who?"),), ChatParams(response_format=AS_SCHEMA), deps)
    assert [a.outcome for a in result.attempts] == ["bad_response", "success"]
    assert "age" in result.attempts[0].error_message and json.loads(result.response.text) == PERSON
    assert [r.model for r in fake_upstream.requests] == ["a", "b"]

    fake_upstream.script("anthropic", [Fault.json({"name": "Ada"}, as_tool=ANSWER_TOOL)], model="a")
    with pytest.raises(AllProvidersFailed) as failed:
        await run(
            replace(plan, steps=plan.steps[:1]),
            (Message("user", "Who?"),),
            ChatParams(response_format=AS_SCHEMA),
            deps,
        )
    assert failed.value.failure_class == "bad_response" and "age" in str(failed.value)
