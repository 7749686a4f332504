"""The capability table: bundled dated data, operator rows that a reload never overwrites,
snapshot names that match their family, and the engine skipping by model."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from providers.engine.clock import FakeClock
from providers.engine.fallback import EngineDeps, run
from providers.engine.plan import ChainPlan
from providers.engine.results import AllProvidersFailed
from providers.engine.types import ChatParams, ImagePart, Message, TextPart
from providers.models import CapabilitySource, ModelCapability
from providers.services.capabilities import CapabilityTableError, capabilities_load
from providers.services.plans import capability_lookup
from tests.providers.engine_fakes import ScriptedAdapter, ok, step

pytestmark = pytest.mark.django_db
PICTURE = (Message("user", "look", parts=(TextPart("look"), ImagePart("https://example.com/a.png"))),)


class Everything(ScriptedAdapter):
    capabilities = frozenset({"tools", "parallel_tools", "images", "json_object", "json_schema", "reasoning"})


def test_the_bundled_table_loads_and_reloads_idempotently():
    first = capabilities_load()
    assert first.created >= 20 and first.updated == 0
    again = capabilities_load()
    assert (again.created, again.updated, again.unchanged) == (0, 0, first.created)
    gpt4o = ModelCapability.objects.get(provider_kind="openai", model="gpt-4o")
    assert gpt4o.images and gpt4o.json_schema and not gpt4o.reasoning
    assert gpt4o.source == CapabilitySource.BUNDLED and gpt4o.as_of == dt.date(2025, 11, 20)
    assert ModelCapability.objects.get(provider_kind="anthropic", model="claude-sonnet-4-5").reasoning


def test_an_operator_row_is_never_overwritten_by_a_reload():
    capabilities_load()
    row = ModelCapability.objects.get(provider_kind="openai", model="gpt-4o")
    row.images, row.source = False, CapabilitySource.OPERATOR
    row.save()
    report = capabilities_load()
    assert report.kept == 1
    assert not ModelCapability.objects.get(pk=row.pk).images


def test_a_bundled_row_is_brought_up_to_date(tmp_path):
    capabilities_load()
    table = tmp_path / "caps.yaml"
    table.write_text("as_of: 2026-01-05\nmodels:\n  openai:\n    gpt-4o: {images: false}\n")
    report = capabilities_load(path=table)
    assert report.updated == 1
    row = ModelCapability.objects.get(provider_kind="openai", model="gpt-4o")
    assert not row.images and not row.json_schema and row.as_of == dt.date(2026, 1, 5)  # defaults apply


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("models: {}\n", "as_of"),
        ("as_of: 2025-01-01\nmodels:\n  openai:\n    gpt-4o: {vision: true}\n", "unknown keys ['vision']"),
        ("as_of: 2025-01-01\nmodels:\n  openai: [gpt-4o]\n", "models.openai"),
        ("as_of: 2025-01-01\nmodels:\n  nope:\n    m: {}\n", "models.nope.m"),
        ("as_of: [\n", "YAML syntax error"),
    ],
)
def test_a_malformed_table_says_where_and_changes_nothing(tmp_path, text, words):
    table = tmp_path / "caps.yaml"
    table.write_text(text)
    with pytest.raises(CapabilityTableError, match=words.replace("[", r"\[").replace("]", r"\]")):
        capabilities_load(path=table)
    assert not ModelCapability.objects.exists()


def test_a_dated_snapshot_matches_its_family_and_the_longest_listed_id_wins():
    capabilities_load()
    assert capability_lookup("openai", "gpt-4o-2024-08-06").model == "gpt-4o"
    assert capability_lookup("openai", "gpt-4.1-mini-2025-04-14").model == "gpt-4.1-mini"
    assert capability_lookup("anthropic", "claude-sonnet-4-5-20250929").model == "claude-sonnet-4-5"
    assert capability_lookup("openai_compatible", "llama3.2") is None  # not listed: assume supported
    assert capability_lookup("openai", "gpt-4o") is not None
    assert capability_lookup("gemini", "gpt-4o") is None  # per provider kind


async def test_the_engine_skips_a_step_whose_model_lacks_a_need_and_names_the_model():
    adapter = Everything()
    adapter.script("b", "m", ok("a cat"))
    blind = replace(step(0, "a"), capabilities=frozenset({"tools"}))
    walk = ChainPlan(slug="c", chain_id=1, steps=(blind, step(1, "b")))
    deps = EngineDeps(adapter_for=lambda kind: adapter, clock=FakeClock())
    result = await run(walk, PICTURE, ChatParams(), deps)
    assert [a.outcome for a in result.attempts] == ["capability_skipped", "success"]
    assert (
        "images" in result.attempts[0].error_message
        and "capability table" in result.attempts[0].error_message
    )
    assert [c[0] for c in adapter.calls] == ["b"]


async def test_an_unlisted_model_is_assumed_to_support_what_its_protocol_can():
    adapter = Everything()
    adapter.script("a", "m", ok("a cat"))
    walk = ChainPlan(slug="c", chain_id=1, steps=(step(0, "a"),))  # capabilities None
    result = await run(
        walk, PICTURE, ChatParams(), EngineDeps(adapter_for=lambda kind: adapter, clock=FakeClock())
    )
    assert [a.outcome for a in result.attempts] == ["success"]


async def test_no_step_able_to_see_the_image_fails_as_capability_skipped():
    adapter = Everything()
    blind = replace(step(0, "a"), capabilities=frozenset())
    walk = ChainPlan(slug="c", chain_id=1, steps=(blind,))
    with pytest.raises(AllProvidersFailed) as info:
        await run(
            walk, PICTURE, ChatParams(), EngineDeps(adapter_for=lambda kind: adapter, clock=FakeClock())
        )
    assert info.value.failure_class == "capability_skipped" and adapter.calls == []
