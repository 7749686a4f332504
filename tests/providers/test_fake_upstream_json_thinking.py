"""The fake upstream's structured-output (JSON) and reasoning answers, per protocol."""

from __future__ import annotations

import json

import pytest

from tests.fakes import FakeToolCall, FakeUsage, Fault
from tests.fakes.faults import DEFAULT_SIGNATURE
from tests.fakes.probe import anthropic_assemble, ask, gemini_assemble, openai_assemble, sse_events

PERSON = {"name": "Ada", "age": 36, "languages": ["en", "fr"]}


def content_of(protocol: str, body: dict) -> str:
    if protocol == "openai":
        return body["choices"][0]["message"]["content"]
    if protocol == "anthropic":
        return "".join(b["text"] for b in body["content"] if b["type"] == "text")
    return "".join(p["text"] for p in body["candidates"][0]["content"]["parts"])


def streamed_text(protocol: str, events: list) -> str:
    if protocol == "openai":
        return openai_assemble(events)["content"]
    if protocol == "anthropic":
        return "".join(b.get("text", "") for b in anthropic_assemble(events)[0])
    return "".join(p.get("text", "") for p in gemini_assemble(events)[0])


# --- JSON -------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["openai", "anthropic", "gemini"])
def test_json_answer_is_the_json_text(fake_upstream, protocol):
    fake_upstream.script(protocol, [Fault.json(PERSON)])
    assert json.loads(content_of(protocol, ask(fake_upstream, protocol).json())) == PERSON


@pytest.mark.parametrize("protocol", ["openai", "anthropic", "gemini"])
def test_streamed_json_answer_reassembles_from_several_pieces(fake_upstream, protocol):
    fake_upstream.script(protocol, [Fault.json(PERSON, arg_pieces=4)])
    events = sse_events(ask(fake_upstream, protocol, stream=True))
    assert json.loads(streamed_text(protocol, events)) == PERSON
    text_events = [e for e in events if '"Ada' in json.dumps(e[1]) or "age" in json.dumps(e[1])]
    assert len(text_events) >= 2  # not one event holding the whole object


@pytest.mark.parametrize("protocol", ["openai", "anthropic", "gemini"])
def test_json_text_is_sent_verbatim_so_it_can_break_a_schema(fake_upstream, protocol):
    for text in ('{"name": "Ada", "age": "thirty-six"}', '{"name": "Ad'):
        fake_upstream.script(protocol, [Fault.json(text)])
        assert content_of(protocol, ask(fake_upstream, protocol).json()) == text


def test_anthropic_json_as_a_forced_tool_use(fake_upstream):
    fake_upstream.script("anthropic", [Fault.json(PERSON, as_tool="record_person")])
    body = ask(fake_upstream, "anthropic").json()
    assert body["stop_reason"] == "tool_use"
    (block,) = body["content"]
    assert block["type"] == "tool_use" and block["name"] == "record_person" and block["input"] == PERSON
    assert block["id"].startswith("toolu_")

    fake_upstream.script("anthropic", [Fault.json(PERSON, as_tool="record_person", arg_pieces=5)])
    events = sse_events(ask(fake_upstream, "anthropic", stream=True))
    json_deltas = [d for _, d in events if d["type"] == "content_block_delta"]
    assert len(json_deltas) == 6 and {d["delta"]["type"] for d in json_deltas} == {"input_json_delta"}
    blocks, stop = anthropic_assemble(events)
    assert stop == "tool_use" and [(b["name"], b["input"]) for b in blocks] == [("record_person", PERSON)]


@pytest.mark.parametrize("protocol", ["openai", "gemini"])
def test_as_tool_is_anthropic_only(fake_upstream, protocol):
    fake_upstream.script(protocol, [Fault.json(PERSON, as_tool="record_person")])
    assert json.loads(content_of(protocol, ask(fake_upstream, protocol).json())) == PERSON


# --- thinking ---------------------------------------------------------------------------
THOUGHT = "The user greets me. I should greet back."
USAGE = FakeUsage(input=30, output=50, reasoning=40)


def test_anthropic_thinking_block_comes_first_and_is_signed(fake_upstream):
    fake_upstream.script("anthropic", [Fault.thinking_answer(THOUGHT, "Hello!")])
    content = ask(fake_upstream, "anthropic").json()["content"]
    assert content == [
        {"type": "thinking", "thinking": THOUGHT, "signature": DEFAULT_SIGNATURE},
        {"type": "text", "text": "Hello!"},
    ]


def test_anthropic_streamed_thinking_uses_thinking_and_signature_deltas(fake_upstream):
    fake_upstream.script("anthropic", [Fault.thinking_answer(THOUGHT, "Hello there!", signature="c2ln")])
    events = sse_events(ask(fake_upstream, "anthropic", stream=True))
    start = events[1][1]
    assert start == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    }
    kinds = [(d["index"], d["delta"]["type"]) for _, d in events if d["type"] == "content_block_delta"]
    thinking = [k for k in kinds if k[0] == 0]
    assert thinking[-1] == (0, "signature_delta") and {k[1] for k in thinking[:-1]} == {"thinking_delta"}
    assert len(thinking) > 2 and {k for k in kinds if k[0] == 1} == {(1, "text_delta")}
    blocks, stop = anthropic_assemble(events)
    assert blocks == [
        {"type": "thinking", "thinking": THOUGHT, "signature": "c2ln"},
        {"type": "text", "text": "Hello there!"},
    ]
    assert stop == "end_turn"


def test_gemini_thought_parts_and_thoughts_token_count(fake_upstream):
    fake_upstream.script("gemini", [Fault.thinking_answer(THOUGHT, "Hello!", usage=USAGE)])
    body = ask(fake_upstream, "gemini").json()
    assert body["candidates"][0]["content"]["parts"] == [
        {"text": THOUGHT, "thought": True},
        {"text": "Hello!"},
    ]
    usage = body["usageMetadata"]
    assert usage["thoughtsTokenCount"] == 40 and usage["candidatesTokenCount"] == 10
    assert usage["totalTokenCount"] == 80

    fake_upstream.script("gemini", [Fault.thinking_answer(THOUGHT, "Hello!", usage=USAGE)])
    parts, finish = gemini_assemble(sse_events(ask(fake_upstream, "gemini", stream=True)))
    assert "".join(p["text"] for p in parts if p.get("thought")) == THOUGHT
    assert "".join(p["text"] for p in parts if not p.get("thought")) == "Hello!" and finish == "STOP"
    first_answer = next(i for i, p in enumerate(parts) if not p.get("thought"))
    assert all(not p.get("thought") for p in parts[first_answer:])  # thoughts come before the answer


def test_openai_counts_reasoning_but_sends_no_reasoning_text(fake_upstream):
    fake_upstream.script("openai", [Fault.thinking_answer(THOUGHT, "Hello!", usage=USAGE)])
    body = ask(fake_upstream, "openai").json()
    assert body["choices"][0]["message"]["content"] == "Hello!"
    assert THOUGHT not in json.dumps(body)
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 40

    fake_upstream.script("openai", [Fault.thinking_answer(THOUGHT, "Hello!", usage=USAGE)])
    message = openai_assemble(sse_events(ask(fake_upstream, "openai", stream=True)))
    assert message["content"] == "Hello!"
    assert message["usage"]["completion_tokens_details"]["reasoning_tokens"] == 40


def test_thinking_then_tool_call_on_anthropic(fake_upstream):
    fake_upstream.script("anthropic", [Fault.tool_calls([FakeToolCall("f", {"x": 1})], thinking=THOUGHT)])
    blocks, stop = anthropic_assemble(sse_events(ask(fake_upstream, "anthropic", stream=True)))
    assert [b["type"] for b in blocks] == ["thinking", "tool_use"] and stop == "tool_use"
    assert blocks[1]["input"] == {"x": 1}
