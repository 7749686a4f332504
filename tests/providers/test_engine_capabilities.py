"""The engine matches what a request needs against each step's adapter before calling it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from providers.engine.clock import FakeClock
from providers.engine.fallback import EngineDeps, run
from providers.engine.plan import ChainPlan
from providers.engine.results import AllProvidersFailed
from providers.engine.types import ChatParams, ChatResponse, Message, ToolCall
from tests.providers.engine_fakes import ScriptedAdapter, ok, step

TOOLS = ({"type": "function", "function": {"name": "f", "parameters": {}}},)
ASK = (Message("user", "hi"),)


class Toolable(ScriptedAdapter):
    capabilities = frozenset({"tools", "json_schema", "json_object"})


def kstep(position: int, name: str, kind: str):
    made = step(position, name)
    return replace(made, provider=replace(made.provider, kind=kind))


def deps(by_kind: dict) -> EngineDeps:
    return EngineDeps(adapter_for=lambda kind: by_kind[kind], clock=FakeClock())


def plan(*steps) -> ChainPlan:
    return ChainPlan(slug="c", chain_id=1, steps=tuple(steps))


async def test_a_step_without_the_capability_is_skipped_and_recorded_without_a_call():
    plain, toolable = ScriptedAdapter(), Toolable()
    toolable.script("b", "m", ok("done"))
    walk = plan(kstep(0, "a", "plain"), kstep(1, "b", "toolable"))
    result = await run(walk, ASK, ChatParams(tools=TOOLS), deps({"plain": plain, "toolable": toolable}))
    assert [a.outcome for a in result.attempts] == ["capability_skipped", "success"]
    assert "tools" in result.attempts[0].error_message and plain.calls == []


@pytest.mark.parametrize(
    ("params", "messages", "named"),
    [
        (ChatParams(tools=TOOLS), ASK, "tools"),
        (
            ChatParams(response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
            ASK,
            "json_schema",
        ),
        (ChatParams(), (*ASK, Message("assistant", "", tool_calls=(ToolCall("c1", "f", "{}"),))), "tools"),
    ],
)
async def test_when_no_step_can_serve_the_walk_fails_as_capability_skipped(params, messages, named):
    plain = ScriptedAdapter()
    with pytest.raises(AllProvidersFailed) as info:
        await run(plan(kstep(0, "a", "plain")), messages, params, deps({"plain": plain}))
    assert info.value.failure_class == "capability_skipped" and named in str(info.value)
    assert plain.calls == []


async def test_a_plain_request_never_asks_about_capabilities():
    plain = ScriptedAdapter()
    plain.script("a", "m", ok("hi"))
    result = await run(plan(kstep(0, "a", "plain")), ASK, ChatParams(), deps({"plain": plain}))
    assert [a.outcome for a in result.attempts] == ["success"]


# --- answers that do not serve the request are bad responses (retried or passed on) ----------
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "weather",
        "schema": {"type": "object", "properties": {"temp_c": {"type": "integer"}}, "required": ["temp_c"]},
    },
}


async def test_an_answer_that_breaks_the_schema_falls_back_to_the_next_step():
    adapter = Toolable()
    adapter.script("a", "m", ok('{"temp_c": "warm"}'))
    adapter.script("b", "m", ok('{"temp_c": 18}'))
    walk = plan(kstep(0, "a", "toolable"), kstep(1, "b", "toolable"))
    result = await run(walk, ASK, ChatParams(response_format=SCHEMA), deps({"toolable": adapter}))
    assert [a.outcome for a in result.attempts] == ["bad_response", "success"]
    assert "temp_c" in result.attempts[0].error_message and result.response.text == '{"temp_c": 18}'


@pytest.mark.parametrize(
    ("answer", "params", "why"),
    [
        (ok("not json"), ChatParams(response_format={"type": "json_object"}), "not valid JSON"),
        (ok("[1, 2]"), ChatParams(response_format={"type": "json_object"}), "not a JSON object"),
        (ok("{}"), ChatParams(response_format=SCHEMA), "temp_c"),
    ],
)
async def test_answers_that_break_the_response_format_are_bad_responses(answer, params, why):
    adapter = Toolable()
    adapter.script("a", "m", answer)
    with pytest.raises(AllProvidersFailed) as info:
        await run(plan(kstep(0, "a", "toolable")), ASK, params, deps({"toolable": adapter}))
    assert info.value.failure_class == "bad_response" and why in str(info.value)


async def test_a_tool_call_with_arguments_that_are_not_json_is_a_bad_response():
    adapter = Toolable()
    broken = ChatResponse("", "tool_calls", None, "m", tool_calls=(ToolCall("c1", "f", '{"city": '),))
    adapter.script("a", "m", broken)
    with pytest.raises(AllProvidersFailed) as info:
        await run(plan(kstep(0, "a", "toolable")), ASK, ChatParams(tools=TOOLS), deps({"toolable": adapter}))
    assert info.value.failure_class == "bad_response" and "not a JSON object" in str(info.value)
