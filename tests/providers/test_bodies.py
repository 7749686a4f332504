"""Body logging per chain (off, on, first N characters): what a request said and got back,
kept through the one service path, masked, cut, traced only when kept, pruned by retention."""

from __future__ import annotations

import datetime as dt
import json

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from providers.engine.clock import FakeClock
from providers.engine.types import ChatResponse, StreamEvent, ToolCall, ToolCallDelta, Usage
from providers.models import ChainStep, Completion, CompletionBody, FallbackChain, Provider
from providers.services.completions import complete
from providers.services.ledger import Caller
from providers.services.retention import ledger_prune
from providers.services.streaming import stream
from tests.providers.engine_fakes import ScriptedAdapter, fail, ok

pytestmark = pytest.mark.django_db(transaction=True)

PROVIDER_KEY = "zq-not-shaped-like-a-key-8842"  # only masked because it is the provider's key
PROMPT = "Summarise the ticket. My key is sk-live0123456789abcdefXYZ and the code word is ORCHID."
ANSWER = "The ticket is about a broken invoice; provider key " + PROVIDER_KEY + " noted."


@pytest.fixture
def chain(db):
    first = Provider(name="first", kind="openai", base_url="https://api.openai.com/v1")
    first.set_api_key(PROVIDER_KEY)
    first.save()
    second = Provider.objects.create(name="second", kind="openai", base_url="https://api.openai.com/v1")
    chain = FallbackChain.objects.create(
        name="Main", slug="main", is_default=True, default_retries=0, body_logging="on"
    )
    ChainStep.objects.create(chain=chain, position=0, provider=first, model="m1")
    ChainStep.objects.create(chain=chain, position=1, provider=second, model="m2")
    return chain


def _overrides(adapter):
    return {"adapter_for": lambda kind: adapter, "clock": adapter.clock}


def _messages():
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": PROMPT},
    ]


async def _complete(adapter, **params):
    return await complete(messages=_messages(), params=params or None, overrides=_overrides(adapter))


def _body(request_id) -> CompletionBody:
    return CompletionBody.objects.get(pk=request_id)


async def test_on_keeps_the_conversation_params_and_answer_with_keys_masked(chain):
    adapter = ScriptedAdapter(FakeClock())
    adapter.script("first", "m1", fail("server_error", status=503))
    adapter.script("second", "m2", ok(ANSWER, usage=Usage(10, 5)))
    result = await _complete(adapter, temperature=0.2, max_tokens=50)
    body = await CompletionBody.objects.aget(pk=result.request_id)
    messages = orjson.loads(body.messages)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "ORCHID" in messages[1]["content"] and "sk-live0123456789abcdefXYZ" not in body.messages
    assert "••••fXYZ" in messages[1]["content"]  # a key-shaped string: masked to its last four
    assert PROVIDER_KEY not in body.answer and "••••8842" in body.answer  # the chain's provider key
    assert body.answer.startswith("The ticket is about a broken invoice")
    assert body.prompt == "Be brief.\n\n" + messages[1]["content"]  # the turns' text: what search reads
    assert body.truncated is False
    completion = await Completion.objects.aget(pk=result.request_id)
    assert body.created_at == completion.created_at
    assert completion.params == {"temperature": 0.2, "max_tokens": 50}  # on the completion, body or not


async def test_first_n_characters_cuts_every_message_and_the_answer(chain):
    chain.body_logging, chain.body_log_chars = "first_chars", 12
    await chain.asave()
    adapter = ScriptedAdapter(FakeClock()).script("first", "m1", ok(ANSWER))
    result = await _complete(adapter)
    body = await CompletionBody.objects.aget(pk=result.request_id)
    messages = orjson.loads(body.messages)
    assert [m["content"] for m in messages] == ["Be brief.", PROMPT[:12]]
    assert body.answer == ANSWER[:12] and body.truncated is True


async def test_off_keeps_nothing(chain):
    chain.body_logging = "off"
    await chain.asave()
    adapter = ScriptedAdapter(FakeClock()).script("first", "m1", ok(ANSWER))
    result = await _complete(adapter)
    assert await Completion.objects.filter(pk=result.request_id).aexists()
    assert not await CompletionBody.objects.filter(pk=result.request_id).aexists()


async def test_tools_and_images_are_kept_by_name_and_reference_never_as_bytes(chain):
    answer = ChatResponse(
        text="",
        finish_reason="tool_calls",
        usage=None,
        model="m1",
        tool_calls=(ToolCall("call_1", "lookup", '{"id": 7}'),),
    )
    adapter = ScriptedAdapter(FakeClock()).script("first", "m1", answer)
    adapter.capabilities = frozenset({"tools", "images"})
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in it?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{pixel}"}},
            ],
        }
    ]
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    result = await complete(messages=messages, params={"tools": tools}, overrides=_overrides(adapter))
    body = await CompletionBody.objects.aget(pk=result.request_id)
    (message,) = orjson.loads(body.messages)
    assert message["content"] == "What is in it?"
    assert message["images"] == ["inline image/png, 70 bytes"] and pixel not in body.messages
    completion = await Completion.objects.aget(pk=result.request_id)
    assert completion.params == {"tools": ["lookup"]}
    assert body.answer == "" and body.answer_tool_calls == [{"name": "lookup", "arguments": '{"id": 7}'}]


async def test_a_failed_request_keeps_its_messages(chain):
    adapter = ScriptedAdapter(FakeClock())
    adapter.script("first", "m1", fail("server_error", status=503))
    adapter.script("second", "m2", fail("server_error", status=503))
    with pytest.raises(Exception, match="failed"):
        await _complete(adapter)
    completion = await Completion.objects.aget()
    body = await CompletionBody.objects.aget(pk=completion.pk)
    assert completion.outcome == "failed" and "ORCHID" in body.messages and body.answer == ""


async def test_a_stream_keeps_the_text_and_tool_calls_it_relayed(chain):
    events = [
        "Broken ",
        "invoice.",
        StreamEvent(tool_calls=(ToolCallDelta(0, id="c1", name="lookup", arguments='{"id":'),)),
        StreamEvent(tool_calls=(ToolCallDelta(0, arguments=" 7}"),)),
        StreamEvent(finish_reason="stop", usage=Usage(3, 2)),
    ]
    adapter = ScriptedAdapter(FakeClock()).script("first", "m1", events)
    relayed = await stream(messages=_messages(), overrides=_overrides(adapter))
    text = "".join([event.text async for event in relayed if event.text])
    body = await CompletionBody.objects.aget(pk=relayed.request_id)
    assert text == body.answer == "Broken invoice."
    assert body.answer_tool_calls == [{"name": "lookup", "arguments": '{"id": 7}'}]


@pytest.mark.parametrize("logging", ["on", "off"])
async def test_spans_carry_text_only_when_the_chain_keeps_bodies(chain, spans, logging):
    chain.body_logging = logging
    await chain.asave()
    adapter = ScriptedAdapter(FakeClock()).script("first", "m1", ok(ANSWER))
    await complete(messages=_messages(), caller=Caller(source="api"), overrides=_overrides(adapter))
    (request,) = [s for s in spans.get_finished_spans() if s.parent is None]
    everything = json.dumps([dict(s.attributes) for s in spans.get_finished_spans()])
    if logging == "off":
        assert "ORCHID" not in everything and "gen_ai.input.messages" not in request.attributes
        return
    inputs = json.loads(request.attributes["gen_ai.input.messages"])
    assert inputs[1]["role"] == "user" and "ORCHID" in inputs[1]["parts"][0]["content"]
    assert inputs[1]["parts"][0]["type"] == "text"
    (output,) = json.loads(request.attributes["gen_ai.output.messages"])
    assert output["role"] == "assistant" and output["parts"][0]["content"].startswith("The ticket")
    assert "sk-live0123456789abcdefXYZ" not in everything and PROVIDER_KEY not in everything


async def test_bodies_go_after_their_own_retention_and_with_their_completion(chain):
    adapter = ScriptedAdapter(FakeClock()).script("first", "m1", ok(ANSWER), then=ok(ANSWER))
    old, new = (await _complete(adapter)).request_id, (await _complete(adapter)).request_id
    long_ago = timezone.now() - dt.timedelta(days=40)
    await Completion.objects.filter(pk=old).aupdate(created_at=long_ago)
    await CompletionBody.objects.filter(pk=old).aupdate(created_at=long_ago)
    prune = sync_to_async(ledger_prune)
    dry = await prune(days=90, body_days=30, dry_run=True)
    assert (dry.completions, dry.bodies) == (0, 1) and "would prune 1" in str(dry)
    report = await prune(days=90, body_days=30)
    assert report.bodies == 1 and report.completions == 0
    assert await Completion.objects.acount() == 2
    assert [b.pk async for b in CompletionBody.objects.all()] == [new]
    await Completion.objects.filter(pk=new).aupdate(created_at=long_ago)  # its completion goes: it too
    report = await prune(days=1, body_days=0)
    assert report.completions == 2 and not await CompletionBody.objects.aexists()
