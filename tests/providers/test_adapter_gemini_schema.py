"""JSON Schema to Gemini's Schema, what Gemini refuses (cannot_serve), and the engine skipping
a Gemini step it cannot serve while the next step answers."""

from __future__ import annotations

import pytest

from providers.adapters.gemini import GeminiAdapter
from providers.adapters.gemini_schema import SchemaRefused, to_gemini
from providers.engine.clock import FakeClock
from providers.engine.fallback import EngineDeps, run
from providers.engine.plan import ChainPlan, StepPlan
from providers.engine.types import (
    ChatParams,
    FailureClass,
    ImagePart,
    Message,
    ProviderConfig,
    TextPart,
    ToolCall,
)
from tests.fakes import Fault
from tests.providers.engine_fakes import ScriptedAdapter, ok

from .adapter_calls import failure
from .conftest import TEST_KEYS

PATH = "tools[0].function.parameters"


def refusal(schema: dict) -> str:
    with pytest.raises(SchemaRefused) as caught:
        to_gemini(schema, PATH)
    return caught.value.reason


# --- conversion -------------------------------------------------------------------------------
def test_pydantic_defs_are_inlined_with_their_sibling_keywords():
    schema = {
        "$defs": {
            "Unit": {"enum": ["c", "f"], "title": "Unit", "type": "string"},
            "Place": {
                "properties": {"city": {"type": "string"}, "unit": {"$ref": "#/$defs/Unit"}},
                "required": ["city", "country"],
                "title": "Place",
                "type": "object",
            },
        },
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "properties": {
            "home": {"$ref": "#/$defs/Place", "description": "Where the user lives"},
            "trips": {"items": {"$ref": "#/$defs/Place"}, "type": "array", "default": [], "examples": [[]]},
        },
        "required": ["home"],
        "title": "Travel",
        "type": "object",
        "additionalProperties": False,
    }
    place = {
        "type": "OBJECT",
        "title": "Place",
        "properties": {
            "city": {"type": "STRING"},
            "unit": {"type": "STRING", "title": "Unit", "enum": ["c", "f"]},
        },
        "required": ["city"],  # "country" is not a property
    }
    assert to_gemini(schema, PATH) == {
        "type": "OBJECT",
        "title": "Travel",
        "properties": {
            "home": {**place, "description": "Where the user lives"},
            "trips": {"type": "ARRAY", "items": place},
        },
        "required": ["home"],
    }


@pytest.mark.parametrize(
    "schema",
    [
        {"type": ["string", "null"], "maxLength": 5},
        {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}]},
        {"oneOf": [{"type": "null"}, {"type": "string", "maxLength": 5}]},
    ],
    ids=["type-list", "anyOf", "oneOf"],
)
def test_null_alternatives_become_nullable(schema):
    assert to_gemini(schema, PATH) == {"type": "STRING", "maxLength": 5, "nullable": True}


def test_a_nullable_union_of_several_types_is_an_any_of_of_nullable_members():
    schema = {"anyOf": [{"type": "integer"}, {"$ref": "#/$defs/S"}, {"type": "null"}], "description": "x"}
    schema["$defs"] = {"S": {"type": "string"}}
    assert to_gemini(schema, PATH) == {
        "description": "x",
        "anyOf": [{"type": "INTEGER", "nullable": True}, {"type": "STRING", "nullable": True}],
    }


def test_several_types_split_their_keywords_by_type():
    schema = {"type": ["string", "integer"], "minLength": 2, "minimum": 1, "description": "an id"}
    assert to_gemini(schema, PATH) == {
        "description": "an id",
        "anyOf": [{"type": "STRING", "minLength": 2}, {"type": "INTEGER", "minimum": 1}],
    }


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"const": "yes"}, {"type": "STRING", "enum": ["yes"]}),
        ({"type": "string", "enum": ["a", None]}, {"type": "STRING", "enum": ["a"], "nullable": True}),
        ({"enum": [1, 2, 3]}, {"type": "INTEGER", "format": "enum", "enum": ["1", "2", "3"]}),
        ({"type": "number", "const": 2.5}, {"type": "NUMBER", "format": "enum", "enum": ["2.5"]}),
        ({"type": "boolean", "const": True}, {"type": "BOOLEAN"}),
        ({"const": None}, {"type": "NULL"}),
        (
            {"type": "number", "exclusiveMinimum": 0, "maximum": 9},
            {"type": "NUMBER", "maximum": 9, "minimum": 0},
        ),
        ({"allOf": [{"$ref": "#/$defs/A"}], "description": "d", "$defs": {"A": {"type": "integer"}}}, None),
        (
            {"properties": {"a": {"type": "string"}}},
            {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}},
        ),
    ],
    ids=[
        "const",
        "enum-null",
        "int-enum",
        "number-const",
        "bool-const",
        "null-const",
        "exclusive",
        "allOf",
        "implied",
    ],
)
def test_values_and_bounds(schema, expected):
    expected = expected or {"type": "INTEGER", "description": "d"}
    assert to_gemini(schema, PATH) == expected


def test_response_schemas_keep_the_property_order():
    schema = {"type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "string"}}}
    assert to_gemini(schema, PATH, ordering=True)["propertyOrdering"] == ["b", "a"]
    assert "propertyOrdering" not in to_gemini(schema, PATH)


@pytest.mark.parametrize(
    ("schema", "what", "where"),
    [
        (
            {"type": "object", "properties": {"x": {"type": "object", "patternProperties": {"^a": {}}}}},
            "'patternProperties'",
            ".properties.x",
        ),
        ({"type": "object", "if": {}, "then": {}, "properties": {"a": {"type": "string"}}}, "'if'", ""),
        ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "'not'", ".properties.a"),
        (
            {"type": "object", "dependentSchemas": {"a": {}}, "properties": {"a": {"type": "string"}}},
            "'dependentSchemas'",
            "",
        ),
        ({"type": "array", "prefixItems": [{"type": "string"}]}, "'prefixItems'", ""),
        ({"type": "integer", "multipleOf": 5}, "'multipleOf'", ""),
        (
            {"type": "object", "additionalProperties": {"type": "string"}},
            "'additionalProperties' (a schema for the other properties)",
            "",
        ),
        ({"type": "array", "items": [{"type": "string"}]}, "'items' (a list of schemas: a tuple)", ""),
        (
            {"$ref": "https://example.com/s.json"},
            "'$ref' ('https://example.com/s.json' is not a reference inside the schema)",
            "",
        ),
        (
            {"type": "string", "enum": ["a", 1]},
            "'enum' (values of more than one type, or objects / arrays)",
            "",
        ),
        ({"allOf": [{"type": "string"}, {"maxLength": 3}]}, "'allOf' (more than one schema)", ""),
    ],
)
def test_a_keyword_without_an_equivalent_is_refused_naming_it_and_where(schema, what, where):
    assert refusal(schema) == f"the gemini protocol cannot take JSON Schema keyword {what} ({PATH}{where})"


def test_a_recursive_ref_is_refused_where_it_recurs():
    schema = {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "child": {"$ref": "#/$defs/Node"}},
            }
        },
        "type": "object",
        "properties": {"root": {"$ref": "#/$defs/Node"}},
    }
    assert refusal(schema) == (
        "the gemini protocol cannot take JSON Schema keyword '$ref' (a recursive reference to "
        f"'#/$defs/Node') ({PATH}.properties.root.properties.child)"
    )


@pytest.mark.parametrize(
    ("schema", "what"),
    [
        (
            {"type": "object", "properties": {"meta": {"type": "object"}}},
            "an object schema without properties (a free-form object)",
        ),
        (
            {"type": "object", "properties": {"any": {"description": "anything"}}},
            "a schema without a type (Gemini cannot express 'any value')",
        ),
        (
            {"type": "object", "properties": {"any": True}},
            "the schema True (a schema must be an object here)",
        ),
    ],
)
def test_what_gemini_cannot_express_at_all_is_refused(schema, what):
    assert (
        refusal(schema)
        == f"the gemini protocol cannot take {what} ({PATH}.properties.{next(iter(schema['properties']))})"
    )


# --- cannot_serve -------------------------------------------------------------------------------
ADAPTER = GeminiAdapter()
ASK = (Message("user", "hi"),)


def tool(parameters: dict) -> dict:
    return {"type": "function", "function": {"name": "f", "parameters": parameters}}


def test_cannot_serve_names_a_tool_keyword_and_where():
    params = ChatParams(tools=(tool({"type": "object", "properties": {"x": {"patternProperties": {}}}}),))
    assert ADAPTER.cannot_serve(ASK, params) == (
        "the gemini protocol cannot take JSON Schema keyword 'patternProperties' "
        "(tools[0].function.parameters.properties.x)"
    )


def test_cannot_serve_names_a_response_schema_keyword_and_where():
    schema = {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}}
    params = ChatParams(
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}
    )
    assert ADAPTER.cannot_serve(ASK, params) == (
        "the gemini protocol cannot take JSON Schema keyword 'multipleOf' "
        "(response_format.json_schema.schema.properties.n)"
    )


def test_cannot_serve_a_tool_result_no_earlier_turn_called():
    messages = (*ASK, Message("tool", "42", tool_call_id="call_1"))
    assert "'call_1' (messages[1])" in ADAPTER.cannot_serve(messages, ChatParams())
    called = (*ASK, Message("assistant", "", tool_calls=(ToolCall("call_1", "f", "{}"),)), messages[1])
    assert ADAPTER.cannot_serve(called, ChatParams()) is None


def test_what_gemini_can_take_is_served():
    params = ChatParams(
        tools=(tool({"type": "object", "properties": {"a": {"type": ["string", "null"]}}}), tool({})),
        response_format={"type": "json_schema", "json_schema": {"schema": {"type": "object"}}},
    )
    assert ADAPTER.cannot_serve(ASK, params) is None


async def test_called_directly_a_refused_schema_is_an_invalid_request_without_a_call(
    fake_upstream, http_client, make_request
):
    params = ChatParams(tools=(tool({"type": "object", "properties": {"x": {"not": {}}}}),))
    error = await failure(make_request("gemini", params=params), http_client, stream=False)
    assert error.failure_class == FailureClass.INVALID_REQUEST and "'not'" in error.message
    assert fake_upstream.requests == []


# --- the engine ----------------------------------------------------------------------------------
class Backup(ScriptedAdapter):
    kind = "backup"
    capabilities = frozenset({"tools", "json_object", "json_schema", "images"})


def gemini_step(fake, position: int = 0, model: str = "gemini-2.5-flash") -> StepPlan:
    provider = ProviderConfig(
        id=position + 1,
        name=f"gem{position}",
        kind="gemini",
        base_url=fake.base_url_for("gemini"),
        api_key=TEST_KEYS["gemini"],
    )
    return StepPlan(position, provider, model, retries=0, timeout_s=5.0, backoff_base_s=0.1)


def backup_step(position: int) -> StepPlan:
    provider = ProviderConfig(id=9, name="backup", kind="backup", base_url="https://backup.invalid")
    return StepPlan(position, provider, "m", retries=0, timeout_s=5.0, backoff_base_s=0.1)


def deps(client, backup: Backup, **kwargs) -> EngineDeps:
    adapters = {"gemini": GeminiAdapter(), "backup": backup}
    return EngineDeps(adapter_for=adapters.__getitem__, client=client, clock=FakeClock(), **kwargs)


async def test_the_engine_skips_a_gemini_step_with_the_reason_and_the_next_step_answers(
    fake_upstream, http_client
):
    backup = Backup()
    backup.script("backup", "m", ok('{"tags": {"x-a": "1"}}'))
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "object", "patternProperties": {"^x-": {"type": "string"}}}},
    }
    params = ChatParams(
        response_format={"type": "json_schema", "json_schema": {"name": "t", "schema": schema}}
    )
    plan = ChainPlan(slug="c", steps=(gemini_step(fake_upstream), backup_step(1)))
    result = await run(plan, ASK, params, deps(http_client, backup))
    assert [a.outcome for a in result.attempts] == ["capability_skipped", "success"]
    assert result.attempts[0].error_message == (
        "the gemini protocol cannot take JSON Schema keyword 'patternProperties' "
        "(response_format.json_schema.schema.properties.tags)"
    )
    assert result.response.text == '{"tags": {"x-a": "1"}}' and fake_upstream.requests == []


async def test_the_engine_serves_a_schema_gemini_can_take_and_validates_the_answer(
    fake_upstream, http_client
):
    schema = {"type": "object", "properties": {"temp_c": {"type": "integer"}}, "required": ["temp_c"]}
    params = ChatParams(
        response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": schema}}
    )
    fake_upstream.script("gemini", [Fault.json({"temp_c": "warm"}), Fault.json({"temp_c": 18})])
    plan = ChainPlan(slug="c", steps=(gemini_step(fake_upstream, 0), gemini_step(fake_upstream, 1)))
    result = await run(plan, ASK, params, deps(http_client, Backup()))
    assert [a.outcome for a in result.attempts] == ["bad_response", "success"]
    assert result.response.text == '{"temp_c": 18}'
    config = fake_upstream.last_request.json["generationConfig"]
    assert config["responseSchema"] == {
        "type": "OBJECT",
        "properties": {"temp_c": {"type": "INTEGER"}},
        "required": ["temp_c"],
    }


async def test_the_engine_fetches_images_inline_before_the_gemini_step(fake_upstream, http_client):
    fetched = []

    async def resolve(messages):
        fetched.append(messages)
        image = ImagePart("https://img.example/a.png", media_type="image/png", data="QUJD")
        return (Message("user", "What?", parts=(TextPart("What?"), image)),)

    messages = (Message("user", "What?", parts=(TextPart("What?"), ImagePart("https://img.example/a.png"))),)
    plan = ChainPlan(slug="c", steps=(gemini_step(fake_upstream),))
    result = await run(plan, messages, ChatParams(), deps(http_client, Backup(), resolve_images=resolve))
    assert [a.outcome for a in result.attempts] == ["success"] and len(fetched) == 1
    assert fake_upstream.last_request.json["contents"][0]["parts"] == [
        {"text": "What?"},
        {"inlineData": {"mimeType": "image/png", "data": "QUJD"}},
    ]
