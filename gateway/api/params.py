"""An OpenAI Chat Completions request body, read into what RANA's service takes.

Every field is either used, harmless to ignore (it cannot change the answer), or refused
with a 400 naming it: nothing that would change the answer is dropped silently. Fields
that would point RANA at another server or key (base_url, api_base, api_key) are ignored:
where requests go and with which key is decided by the chain alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.api.errors import ApiError

PARAMS = (
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "user",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
    "n",
    "logprobs",
    "top_logprobs",
    "functions",
    "function_call",
)
DEFAULT_CHAIN_NAMES = ("", "default")

# Cannot change the answer (bookkeeping at OpenAI, or transport settings RANA never obeys).
IGNORED = frozenset(
    {
        "metadata",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "base_url",
        "api_base",
        "api_key",
        "api_version",
        "organization",
    }
)

# Accepted only with a value that leaves the answer as RANA gives it.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "logit_bias": (None, {}),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
    "web_search_options": (None,),
    "verbosity": (None,),
}
KNOWN = frozenset({"model", "messages", "max_tokens", "max_completion_tokens", "stream", "stream_options"})


@dataclass(slots=True)
class ChatCall:
    chain: str | None  # None: the default chain
    messages: Any  # validated by the service
    params: dict[str, Any]
    stream: bool
    include_usage: bool
    legacy_functions: bool = False  # asked with `functions`: answer with `function_call`


def _unsupported(name: str) -> ApiError:
    return ApiError(
        400,
        f"'{name}' is not supported by RANA with this value: it would change the answer and RANA "
        "cannot guarantee that every provider in a chain honours it.",
        param=name,
        code="unsupported_parameter",
    )


def _check_fields(body: dict[str, Any]) -> None:
    for name, value in body.items():
        if name in KNOWN or name in IGNORED or name in PARAMS:
            continue
        neutral = NEUTRAL.get(name)
        if neutral is None:
            raise ApiError(400, f"Unrecognized request argument supplied: {name}", param=name)
        if value not in neutral:
            raise _unsupported(name)


def _chain(body: dict[str, Any]) -> str | None:
    model = body.get("model")
    if model is None:
        return None
    if not isinstance(model, str):
        raise ApiError(400, "'model' must be a string: the slug of a RANA chain.", param="model")
    return None if model.strip() in DEFAULT_CHAIN_NAMES else model.strip()


def _stream(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream")
    if stream not in (None, True, False):
        raise ApiError(400, "'stream' must be a boolean.", param="stream")
    options = body.get("stream_options")
    if options is None or not stream:
        return bool(stream), False
    if not isinstance(options, dict) or set(options) - {"include_usage", "include_obfuscation"}:
        raise ApiError(400, "'stream_options' supports include_usage only.", param="stream_options")
    include_usage = options.get("include_usage")
    if include_usage not in (None, True, False):
        raise ApiError(400, "'stream_options.include_usage' must be a boolean.", param="stream_options")
    return True, bool(include_usage)


def too_many_messages(count: int, limit: int) -> ApiError:
    return ApiError(
        400,
        f"'messages' has {count} messages; RANA accepts at most {limit} in one request "
        "(RANA_API_MAX_MESSAGES).",
        param="messages",
        code="too_many_messages",
    )


def chat_call_parse(body: bytes, *, max_messages: int | None = None) -> ChatCall:
    """Read and check a request body; raises ApiError (400) naming the field at fault."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    _check_fields(data)
    params = {name: data[name] for name in PARAMS if data.get(name) is not None}
    max_tokens = data.get("max_completion_tokens")
    max_tokens = data.get("max_tokens") if max_tokens is None else max_tokens
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    messages = data.get("messages")
    if messages is None:
        raise ApiError(400, "Missing required parameter: 'messages'.", param="messages")
    if max_messages is not None and isinstance(messages, list) and len(messages) > max_messages:
        raise too_many_messages(len(messages), max_messages)
    stream, include_usage = _stream(data)
    legacy = bool(data.get("functions")) and not data.get("tools")
    return ChatCall(_chain(data), messages, params, stream, include_usage, legacy)
