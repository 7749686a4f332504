"""Validate and normalise what callers send: chat messages and parameters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from providers.engine.types import ChatParams, ContentPart, Message, TextPart, ToolCall

from .image_parts import image_part
from .input_errors import InvalidRequest

__all__ = ["InvalidRequest", "messages_normalise", "params_normalise"]

ROLES = {"system", "user", "assistant", "developer", "tool"}
TOOL_CHOICES = {"none", "auto", "required"}
RESPONSE_FORMATS = {"text", "json_object", "json_schema"}
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")


def _content(content: Any, where: str, role: str) -> tuple[str, tuple[ContentPart, ...]]:
    """A message's text and, when it carries images, its parts in order."""
    if isinstance(content, str):
        return content, ()
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content", "must be a string or a list of content parts")
    parts: list[ContentPart] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(TextPart(part["text"]))
        elif kind == "image_url":
            if role != "user":
                raise InvalidRequest(at, "images are accepted in user messages only")
            parts.append(image_part(part, at))
        elif kind in ("input_audio", "file", "refusal"):
            raise InvalidRequest(at, f"{kind} content parts are not supported (text and image_url are)")
        else:
            raise InvalidRequest(at, "must be a text part or an image_url part")
    text = "".join(p.text for p in parts if isinstance(p, TextPart))
    has_images = any(not isinstance(p, TextPart) for p in parts)
    return text, tuple(parts) if has_images else ()


def _tool_calls(raw: Any, where: str) -> tuple[ToolCall, ...]:
    """An assistant turn's tool_calls (OpenAI's shape): id, function name, JSON arguments text."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidRequest(f"{where}.tool_calls", "must be a list")
    calls = []
    for j, call in enumerate(raw):
        at = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(call.get("id"), str):
            raise InvalidRequest(at, "must have an id and a function with a name and arguments")
        name, arguments = function.get("name"), function.get("arguments", "")
        if not isinstance(name, str) or not name or not isinstance(arguments, str):
            raise InvalidRequest(f"{at}.function", "needs a name and arguments as a JSON string")
        calls.append(ToolCall(call["id"], name, arguments))
    return tuple(calls)


def _legacy_call(raw: Any, where: str) -> tuple[ToolCall, ...]:
    """An assistant turn's legacy `function_call`: one tool call whose id is its function name."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise InvalidRequest(f"{where}.function_call", "needs a name and arguments as a JSON string")
    arguments = raw.get("arguments", "")
    if not isinstance(arguments, str):
        raise InvalidRequest(f"{where}.function_call.arguments", "must be a JSON string")
    return (ToolCall(f"call_{raw['name']}", raw["name"], arguments),)


def _message(raw: Mapping[str, Any], where: str) -> Message:
    role = raw.get("role")
    if role == "function":  # the legacy answer to a function_call: a tool turn
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{where}.name", "a function message must name the function it answers")
        raw = {"role": "tool", "content": raw.get("content") or "", "tool_call_id": f"call_{name}"}
        role = "tool"
    if role not in ROLES:
        raise InvalidRequest(
            f"{where}.role", f"must be one of system, developer, user, assistant, tool (got {role!r})"
        )
    calls = _tool_calls(raw.get("tool_calls"), where) if role == "assistant" else ()
    if role == "assistant" and not calls and raw.get("function_call") is not None:
        calls = _legacy_call(raw["function_call"], where)
    content = raw.get("content")
    if content is None and (calls or role == "assistant"):
        text, parts = "", ()
    else:
        text, parts = _content(content, where, role)
    tool_call_id = raw.get("tool_call_id")
    if role == "tool" and (not isinstance(tool_call_id, str) or not tool_call_id):
        raise InvalidRequest(f"{where}.tool_call_id", "a tool message must name the call it answers")
    return Message(
        role="system" if role == "developer" else role,
        content=text.replace("\r\n", "\n"),
        tool_calls=calls,
        tool_call_id=tool_call_id if role == "tool" else None,
        parts=parts,
    )


def messages_normalise(messages: Sequence[Message | Mapping[str, Any]]) -> tuple[Message, ...]:
    if not isinstance(messages, Sequence) or isinstance(messages, str | bytes) or not messages:
        raise InvalidRequest("messages", "must be a non-empty list of messages")
    out = []
    for i, raw in enumerate(messages):
        where = f"messages[{i}]"
        if isinstance(raw, Message):
            out.append(raw)
        elif isinstance(raw, Mapping):
            out.append(_message(raw, where))
        else:
            raise InvalidRequest(where, "must be an object with role and content")
    if all(m.role == "system" for m in out):
        raise InvalidRequest("messages", "needs at least one user message")
    return tuple(out)


def _number(params: Mapping, name: str, low: float, high: float) -> float | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(name, "must be a number") from None
    if not low <= number <= high:
        raise InvalidRequest(name, f"must be between {low:g} and {high:g}")
    return number


def _integer(params: Mapping, name: str, low: int, high: int) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not (
        isinstance(value, int) or (isinstance(value, str) and value.isdigit())
    ):
        raise InvalidRequest(name, "must be a whole number")
    number = int(value)
    if not low <= number <= high:
        raise InvalidRequest(name, f"must be between {low} and {high}")
    return number


def _stop(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value) and len(value) <= 4:
        return tuple(value)
    raise InvalidRequest("stop", "must be a string or a list of at most 4 strings")


def _tools(value: Any) -> tuple[Mapping[str, Any], ...]:
    if value is None or value == []:
        return ()
    if not isinstance(value, list):
        raise InvalidRequest("tools", "must be a list of function tools")
    for j, tool in enumerate(value):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if (
            not isinstance(tool, Mapping)
            or tool.get("type") != "function"
            or not isinstance(function, Mapping)
        ):
            raise InvalidRequest(f"tools[{j}]", 'must be {"type": "function", "function": {...}}')
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise InvalidRequest(f"tools[{j}].function.name", "is required")
        if not isinstance(function.get("parameters", {}), Mapping):
            raise InvalidRequest(f"tools[{j}].function.parameters", "must be a JSON Schema object")
    return tuple(value)


def _tool_choice(value: Any, tools: tuple) -> str | Mapping[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str) and value in TOOL_CHOICES:
        return value
    function = value.get("function") if isinstance(value, Mapping) else None
    if isinstance(function, Mapping) and isinstance(function.get("name"), str):
        if function["name"] not in {t["function"]["name"] for t in tools}:
            raise InvalidRequest(
                "tool_choice", f"names a function that is not in tools: {function['name']!r}"
            )
        return value
    raise InvalidRequest("tool_choice", 'must be "none", "auto", "required" or one named function')


def _response_format(value: Any) -> Mapping[str, Any] | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, Mapping) else None
    if kind not in RESPONSE_FORMATS:
        raise InvalidRequest("response_format", "must have type text, json_object or json_schema")
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("schema", {}), Mapping):
            raise InvalidRequest("response_format.json_schema", "needs a name and a schema object")
    return None if kind == "text" else value


def params_normalise(params: ChatParams | Mapping[str, Any] | None) -> ChatParams:
    if params is None:
        return ChatParams()
    if isinstance(params, ChatParams):
        return params
    user = params.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("user", "must be a string")
    parallel = params.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise InvalidRequest("parallel_tool_calls", "must be true or false")
    tools = _tools(params.get("tools"))
    tool_choice = params.get("tool_choice")
    if not tools and params.get("functions"):  # the legacy spelling of tools
        tools = _tools([{"type": "function", "function": f} for f in _list(params, "functions")])
        tool_choice = _legacy_choice(params.get("function_call"))
    effort = params.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise InvalidRequest("reasoning_effort", f"must be one of {', '.join(REASONING_EFFORTS)}")
    logprobs = params.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise InvalidRequest("logprobs", "must be true or false")
    top_logprobs = _integer(params, "top_logprobs", 0, 20)
    if top_logprobs and not logprobs:
        raise InvalidRequest("top_logprobs", "needs logprobs: true")
    return ChatParams(
        temperature=_number(params, "temperature", 0, 2),
        max_tokens=_integer(params, "max_tokens", 1, 1_000_000),
        top_p=_number(params, "top_p", 0, 1),
        stop=_stop(params.get("stop")),
        seed=_integer(params, "seed", 0, 2**63 - 1),
        presence_penalty=_number(params, "presence_penalty", -2, 2),
        frequency_penalty=_number(params, "frequency_penalty", -2, 2),
        user=user,
        tools=tools,
        tool_choice=_tool_choice(tool_choice, tools),
        parallel_tool_calls=parallel,
        response_format=_response_format(params.get("response_format")),
        reasoning_effort=effort,
        n=_integer(params, "n", 1, 128),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )


def _list(params: Mapping, name: str) -> list[Any]:
    value = params.get(name)
    if not isinstance(value, list):
        raise InvalidRequest(name, "must be a list")
    return value


def _legacy_choice(value: Any) -> str | Mapping[str, Any] | None:
    """`function_call` (none | auto | {"name": ...}) as a tool_choice."""
    if value is None or value in ("none", "auto"):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        return {"type": "function", "function": {"name": value["name"]}}
    raise InvalidRequest("function_call", 'must be "none", "auto" or {"name": ...}')
