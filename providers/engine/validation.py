"""Is an answer what the request asked for? A tool call's arguments must be a JSON object, and
with a JSON response format the text must be JSON (matching the schema for json_schema).

An answer that is not is a bad_response: the engine retries the step or moves to the next one
like after any other bad answer, so a caller never receives a "success" that breaks its schema.
Streams are committed at their first token, before the whole answer exists: they are checked
when they end (engine/stream.py), too late to fall back but never recorded as a success.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import validators
from jsonschema.exceptions import SchemaError

from .types import ChatParams, ChatResponse


def _json(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def _schema_problem(value: Any, schema: dict[str, Any]) -> str | None:
    try:
        validator_class = validators.validator_for(schema)
        validator_class.check_schema(schema)
    except SchemaError:
        return None  # the caller's schema is not one we can check: the provider had it as sent
    error = next(iter(validator_class(schema).iter_errors(value)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(the root)"
    return f"the answer breaks the response schema at {where}: {error.message[:200]}"


def answer_problem(response: ChatResponse, params: ChatParams, *, schema: bool = True) -> str | None:
    """Why the answer (every choice of it) does not serve the request, or None when it does
    (`schema`: check a json_schema answer against its schema; JSON itself is always checked)."""
    if response.refusal and not response.text and not response.tool_calls:
        return None  # the model declined: nothing to check (the chain's policy decides)
    for choice in response.more_choices:
        problem = _choice_problem(choice.text, choice.tool_calls, params, schema)
        if problem is not None:
            return problem
    return _choice_problem(response.text, response.tool_calls, params, schema)


def _choice_problem(text: str, tool_calls: tuple, params: ChatParams, schema: bool) -> str | None:
    for call in tool_calls:
        ok, value = _json(call.arguments or "{}")
        if not ok or not isinstance(value, dict):
            return f"tool call {call.name!r} has arguments that are not a JSON object"
    kind = (params.response_format or {}).get("type")
    if kind not in ("json_object", "json_schema") or tool_calls:
        return None
    ok, value = _json(text)
    if not ok:
        return "the answer is not valid JSON, though a JSON response format was asked for"
    if kind == "json_object":
        return None if isinstance(value, dict) else "the answer is not a JSON object (json_object was asked)"
    spec = (params.response_format.get("json_schema") or {}).get("schema")
    return _schema_problem(value, spec) if schema and isinstance(spec, dict) else None
