"""The fake upstream's tool calls, in each protocol's exact wire shape, streamed and not."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.fakes import FakeToolCall, Fault
from tests.fakes.probe import (
    anthropic_assemble,
    ask,
    gemini_assemble,
    openai_assemble,
    read_until_cut,
    sse_events,
)

WEATHER = FakeToolCall("get_weather", {"city": "Paris", "unit": "celsius"})
TIME = FakeToolCall("get_time", '{"zone": "Europe/Paris"}', id="call_given_1")


# --- OpenAI -----------------------------------------------------------------------------
def test_openai_tool_call_body(fake_upstream):
    fake_upstream.script("openai", [Fault.tool_calls([WEATHER, TIME])])
    choice = ask(fake_upstream, "openai").json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None and message["role"] == "assistant"
    first, second = message["tool_calls"]
    assert first["id"].startswith("call_") and first["id"] != second["id"]
    assert first == {
        "id": first["id"],
        "type": "function",
        "function": {"name": "get_weather", "arguments": WEATHER.arguments},
    }
    assert second == {
        "id": "call_given_1",
        "type": "function",
        "function": {"name": "get_time", "arguments": TIME.arguments},
    }


def test_openai_streamed_tool_calls_are_split_into_fragments(fake_upstream):
    fake_upstream.script("openai", [Fault.tool_calls([WEATHER, TIME], arg_pieces=5)])
    events = sse_events(ask(fake_upstream, "openai", stream=True))
    assert events[-1] == (None, "[DONE]")
    chunks = [data for _, data in events[:-1]]
    head = chunks[0]["choices"][0]["delta"]
    assert head["role"] == "assistant" and head["content"] is None
    assert head["tool_calls"][0] == {
        "index": 0,
        "id": head["tool_calls"][0]["id"],
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    tool_parts = [
        part for c in chunks if c["choices"] for part in c["choices"][0]["delta"].get("tool_calls", [])
    ]
    fragments = [p for p in tool_parts if "id" not in p]
    assert all(set(p) == {"index", "function"} and set(p["function"]) == {"arguments"} for p in fragments)
    assert [p["index"] for p in fragments].count(0) == 5 and [p["index"] for p in fragments].count(1) == 5
    heads = [p for p in tool_parts if "id" in p]
    assert [(p["index"], p["id"]) for p in heads][1] == (1, "call_given_1")
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 7
    message = openai_assemble(events)
    assert [(c["name"], c["arguments"]) for c in message["tool_calls"]] == [
        ("get_weather", WEATHER.arguments),
        ("get_time", TIME.arguments),
    ]
    assert message["content"] == "" and message["finish"] == "tool_calls"


def test_openai_text_before_tool_call(fake_upstream):
    fake_upstream.script("openai", [Fault.tool_calls([WEATHER], text="Let me check.")])
    assert ask(fake_upstream, "openai").json()["choices"][0]["message"]["content"] == "Let me check."
    fake_upstream.script("openai", [Fault.tool_calls([WEATHER], text="Let me check.")])
    events = sse_events(ask(fake_upstream, "openai", stream=True))
    assert events[0][1]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    message = openai_assemble(events)
    assert (
        message["content"] == "Let me check." and message["tool_calls"][0]["arguments"] == WEATHER.arguments
    )


# --- Anthropic --------------------------------------------------------------------------
def test_anthropic_tool_use_body(fake_upstream):
    fake_upstream.script("anthropic", [Fault.tool_calls([WEATHER, TIME], text="Checking.")])
    body = ask(fake_upstream, "anthropic").json()
    assert body["stop_reason"] == "tool_use"
    text, weather, clock = body["content"]
    assert text == {"type": "text", "text": "Checking."}
    assert weather["id"].startswith("toolu_")
    assert weather == {
        "type": "tool_use",
        "id": weather["id"],
        "name": "get_weather",
        "input": json.loads(WEATHER.arguments),
    }
    assert clock == {
        "type": "tool_use",
        "id": "call_given_1",
        "name": "get_time",
        "input": {"zone": "Europe/Paris"},
    }


def test_anthropic_streamed_tool_use_sends_partial_json(fake_upstream):
    fake_upstream.script("anthropic", [Fault.tool_calls([WEATHER, TIME], arg_pieces=4)])
    events = sse_events(ask(fake_upstream, "anthropic", stream=True))
    assert all(name == data["type"] for name, data in events)
    types = [data["type"] for _, data in events]
    run = ["content_block_start"] + ["content_block_delta"] * 5 + ["content_block_stop"]  # "" + 4 pieces
    assert types == ["message_start", run[0], "ping", *run[1:], *run, "message_delta", "message_stop"]
    start = events[1][1]
    assert start["index"] == 0 and start["content_block"]["type"] == "tool_use"
    assert start["content_block"]["input"] == {} and start["content_block"]["name"] == "get_weather"
    deltas = [d for _, d in events if d["type"] == "content_block_delta"]
    assert {d["delta"]["type"] for d in deltas} == {"input_json_delta"}
    assert "".join(d["delta"]["partial_json"] for d in deltas if d["index"] == 0) == WEATHER.arguments
    blocks, stop = anthropic_assemble(events)
    assert stop == "tool_use"
    assert [(b["name"], b["input"]) for b in blocks] == [
        ("get_weather", json.loads(WEATHER.arguments)),
        ("get_time", json.loads(TIME.arguments)),
    ]
    assert events[-2][1]["usage"] == {"output_tokens": 7}


def test_anthropic_stream_with_text_puts_the_text_block_first(fake_upstream):
    fake_upstream.script("anthropic", [Fault.tool_calls([WEATHER], text="Checking now.")])
    blocks, _ = anthropic_assemble(sse_events(ask(fake_upstream, "anthropic", stream=True)))
    assert [b["type"] for b in blocks] == ["text", "tool_use"] and blocks[0]["text"] == "Checking now."


def test_anthropic_tool_use_needs_an_object_in_a_body_but_streams_anything(fake_upstream):
    broken = FakeToolCall("f", '{"half": ')
    fake_upstream.script("anthropic", [Fault.tool_calls([broken])])
    events = sse_events(ask(fake_upstream, "anthropic", stream=True))
    partial = "".join(
        d["delta"].get("partial_json", "") for _, d in events if d["type"] == "content_block_delta"
    )
    assert partial == '{"half": '


# --- Gemini -----------------------------------------------------------------------------
def test_gemini_function_call_body(fake_upstream):
    fake_upstream.script("gemini", [Fault.tool_calls([WEATHER, TIME])])
    body = ask(fake_upstream, "gemini").json()
    candidate = body["candidates"][0]
    assert candidate["finishReason"] == "STOP" and candidate["content"]["role"] == "model"
    assert candidate["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris", "unit": "celsius"}}},
        {"functionCall": {"id": "call_given_1", "name": "get_time", "args": {"zone": "Europe/Paris"}}},
    ]
    assert body["usageMetadata"]["candidatesTokenCount"] == 7


def test_gemini_stream_sends_each_function_call_whole_in_the_last_event(fake_upstream):
    fault = Fault.tool_calls([WEATHER], text="Looking it up", signature="c2lnbmVk")
    fake_upstream.script("gemini", [fault])
    response = ask(fake_upstream, "gemini", stream=True)
    assert "\r\n\r\n" in response.text
    events = sse_events(response)
    last = events[-1][1]["candidates"][0]
    assert last["finishReason"] == "STOP"
    assert last["content"]["parts"] == [
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris", "unit": "celsius"}},
            "thoughtSignature": "c2lnbmVk",
        }
    ]
    assert all("finishReason" not in e[1]["candidates"][0] for e in events[:-1])
    parts, finish = gemini_assemble(events)
    assert "".join(p.get("text", "") for p in parts) == "Looking it up" and finish == "STOP"


# --- faults compose with tool calls -----------------------------------------------------
@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_a_tool_call_stream_can_be_truncated(fake_upstream, protocol):
    fault = replace(Fault.tool_calls([WEATHER], arg_pieces=4), kind="truncated", after_chunks=2)
    fake_upstream.script(protocol, [fault])
    text, cut = read_until_cut(fake_upstream, protocol, stream=True)
    assert cut and "[DONE]" not in text and "message_stop" not in text
    assert "get_weather" in text


def test_recorded_request_exposes_tools_and_choice(fake_upstream):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    ask(fake_upstream, "openai", tools=tools, tool_choice="required", response_format={"type": "json_object"})
    ask(
        fake_upstream,
        "gemini",
        tools=[{"functionDeclarations": []}],
        toolConfig={"functionCallingConfig": {"mode": "ANY"}},
    )
    openai, gemini = fake_upstream.requests
    assert openai.tools == tools and openai.tool_choice == "required"
    assert openai.output_format == {"type": "json_object"} and openai.messages[0]["content"] == "hi"
    assert gemini.tool_choice == {"functionCallingConfig": {"mode": "ANY"}}
    assert gemini.messages[0]["parts"] == [{"text": "hi"}]


@pytest.mark.parametrize("protocol", ["openai", "anthropic", "gemini"])
def test_a_tool_call_stream_can_be_split_into_tiny_writes(fake_upstream, protocol):
    fake_upstream.script(protocol, [replace(Fault.tool_calls([WEATHER, TIME]), kind="split")])
    events = sse_events(ask(fake_upstream, protocol, stream=True))
    if protocol == "openai":
        calls = [(c["name"], c["arguments"]) for c in openai_assemble(events)["tool_calls"]]
        assert calls == [("get_weather", WEATHER.arguments), ("get_time", TIME.arguments)]
    elif protocol == "anthropic":
        blocks, _ = anthropic_assemble(events)
        assert [b["input"] for b in blocks] == [json.loads(WEATHER.arguments), json.loads(TIME.arguments)]
    else:
        parts, _ = gemini_assemble(events)
        assert [p["functionCall"]["name"] for p in parts if "functionCall" in p] == [
            "get_weather",
            "get_time",
        ]
