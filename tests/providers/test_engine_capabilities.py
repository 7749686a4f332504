"""The engine matches what a request needs against each step's adapter before calling it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from providers.engine.clock import FakeClock
from providers.engine.fallback import EngineDeps, run
from providers.engine.plan import ChainPlan
from providers.engine.results import AllProvidersFailed
from providers.engine.types import ChatParams, Message, ToolCall
from tests.providers.engine_fakes import ScriptedAdapter, ok, step

TOOLS = ({"type": "function", "function": {"name": "f", "parameters": {}}},)
ASK = (Message("user", "hi"),)


class Toolable(ScriptedAdapter):
    capabilities = frozenset({"tools", "json_schema"})


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
