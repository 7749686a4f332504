"""Anthropic Messages API: POST {base_url}/v1/messages.

Request shape: system messages are joined into the top-level `system`; the rest are merged
so consecutive messages of one role become one turn (user/assistant alternate). Tools, tool
calls and tool results are translated by anthropic_tools. A
conversation that starts with an assistant turn is sent as it is: the API decides.
`max_tokens` is required by the API: the request's, else the provider option
`max_tokens`, else 4096.

Usage is normalised: input_tokens = input_tokens + cache_read_input_tokens +
cache_creation_input_tokens (Anthropic counts them apart), cached_tokens = cache reads.

Error mapping (error.type, then status): overloaded_error (529) and rate_limit_error (429)
-> rate_limited; invalid_request_error mentioning credit balance / spend or usage limit /
billing -> quota_exhausted, "prompt is too long" -> context_length, else invalid_request;
authentication_error / permission_error -> auth_error; not_found_error, request_too_large
-> invalid_request; billing_error -> quota_exhausted; timeout_error -> timeout;
api_error -> server_error. An `error` event inside a stream maps the same way.
"""

from __future__ import annotations

from typing import Any

from providers.engine.types import ChatRequest, ChatResponse, FailureClass, StreamEvent, ToolCallDelta, Usage

from .anthropic_tools import ToolStream, parse_tool_calls, tool_fields, tool_messages, uses_tools
from .common import (
    HttpAdapter,
    UpstreamCall,
    count,
    default_classify,
    error_from_payload,
    merge_turns,
    parse_json,
    stream_ended_early,
    timeout_for,
)
from .errors import check_api_key
from .sse import SSEEvent

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
    "tool_use": "tool_calls",
}
_TYPE_CLASSES = {
    "overloaded_error": FailureClass.RATE_LIMITED,
    "rate_limit_error": FailureClass.RATE_LIMITED,
    "authentication_error": FailureClass.AUTH_ERROR,
    "permission_error": FailureClass.AUTH_ERROR,
    "not_found_error": FailureClass.INVALID_REQUEST,
    "request_too_large": FailureClass.INVALID_REQUEST,
    "billing_error": FailureClass.QUOTA_EXHAUSTED,
    "timeout_error": FailureClass.TIMEOUT,
    "api_error": FailureClass.SERVER_ERROR,
}
_BILLING_MARKERS = ("credit balance", "spend limit", "usage limit", "billing")


def _max_tokens(request: ChatRequest) -> int:
    if request.params.max_tokens:
        return request.params.max_tokens
    option = request.provider.options.get("max_tokens")
    if isinstance(option, int) and not isinstance(option, bool) and option > 0:
        return option
    return DEFAULT_MAX_TOKENS


def build_body(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    params = request.params
    if uses_tools(request.messages, params):
        system, messages = tool_messages(request.messages)
    else:
        system, turns = merge_turns(request.messages, assistant_role="assistant")
        messages = [{"role": role, "content": text} for role, text in turns]
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": _max_tokens(request),
        "messages": messages,
        **tool_fields(params),
    }
    optional = {
        "system": system or None,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "stop_sequences": list(params.stop) or None,
        "metadata": {"user_id": params.user} if params.user else None,
        "stream": True if stream else None,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    return body


def classify(status: int | None, payload: Any, text: str) -> tuple[FailureClass, str]:
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        kind, message = str(error.get("type") or ""), str(error.get("message") or "")
    else:
        kind, message = "", text.strip()[:300]
    detail = f"{message or f'HTTP {status}'}" + (f" [{kind}]" if kind else "")
    if kind == "invalid_request_error" or (status == 400 and not kind):
        lowered = message.lower()
        if any(marker in lowered for marker in _BILLING_MARKERS):
            return FailureClass.QUOTA_EXHAUSTED, detail
        if "prompt is too long" in lowered:
            return FailureClass.CONTEXT_LENGTH, detail
        return FailureClass.INVALID_REQUEST, detail
    if kind in _TYPE_CLASSES:
        return _TYPE_CLASSES[kind], detail
    return default_classify(status, detail)


def parse_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    cache_read = count(raw.get("cache_read_input_tokens"))
    cache_creation = count(raw.get("cache_creation_input_tokens"))
    return Usage(
        input_tokens=count(raw.get("input_tokens")) + cache_read + cache_creation,
        output_tokens=count(raw.get("output_tokens")),
        cached_tokens=cache_read,
    )


def _finish_reason(stop_reason: Any) -> str | None:
    if not isinstance(stop_reason, str):
        return None
    return STOP_REASONS.get(stop_reason, stop_reason)


def parse_message(call: UpstreamCall, data: Any, model: str) -> ChatResponse:
    if isinstance(data, dict) and data.get("type") == "error":
        raise error_from_payload(call, None, data, "")
    content = data.get("content") if isinstance(data, dict) else None
    if not isinstance(content, list):
        raise call.error(FailureClass.BAD_RESPONSE, "a 200 response without content")
    text = "".join(
        block["text"]
        for block in content
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
    )
    usage = parse_usage(data.get("usage"))
    finish_reason = _finish_reason(data.get("stop_reason"))
    if not text and finish_reason == "content_filter":
        raise call.error(FailureClass.CONTENT_FILTER, "the provider refused (refusal)", usage=usage)
    return ChatResponse(
        text=text,
        finish_reason=finish_reason,
        usage=usage,
        model=str(data.get("model") or model),
        response_id=str(data.get("id") or ""),
        tool_calls=parse_tool_calls(content),
    )


class _StreamState:
    """What a stream has said so far; usage fields merge as message_delta updates them."""

    def __init__(self, call: UpstreamCall) -> None:
        self.call = call
        self.done = False
        self.got_text = False
        self.stop_reason: str | None = None
        self._usage: dict[str, Any] = {}
        self.tools = ToolStream()
        self.tool_deltas: tuple[ToolCallDelta, ...] = ()  # the last event's tool-call pieces

    @property
    def usage(self) -> Usage | None:
        return parse_usage(self._usage) if self._usage else None

    def _merge_usage(self, raw: Any) -> None:
        if isinstance(raw, dict):
            self._usage.update({k: v for k, v in raw.items() if v is not None})

    def feed(self, event: SSEEvent) -> str:
        self.tool_deltas = ()
        if self.done:
            return ""
        payload = parse_json(self.call, event.data, what="stream event")
        if not isinstance(payload, dict):
            raise self.call.error(FailureClass.BAD_RESPONSE, "a stream event that is not a JSON object")
        kind = payload.get("type") or event.event
        if kind == "error":
            raise error_from_payload(self.call, None, payload, event.data, usage=self.usage)
        if kind == "message_start" and isinstance(payload.get("message"), dict):
            self._merge_usage(payload["message"].get("usage"))
        elif kind == "message_delta":
            delta = payload.get("delta") if isinstance(payload.get("delta"), dict) else {}
            self.stop_reason = delta.get("stop_reason") or self.stop_reason
            self._merge_usage(payload.get("usage"))
        elif kind == "message_stop":
            self.done = True
        elif kind in ("content_block_start", "content_block_delta"):
            block = payload.get("content_block" if kind == "content_block_start" else "delta")
            if isinstance(block, dict) and block.get("type") in ("tool_use", "input_json_delta"):
                opened = kind == "content_block_start"
                self.tool_deltas = (self.tools.start if opened else self.tools.delta)(payload, block)
                self.got_text = self.got_text or bool(self.tool_deltas)
            elif isinstance(block, dict) and block.get("type") in ("text", "text_delta"):
                text = block.get("text")
                if isinstance(text, str) and text:
                    self.got_text = True
                    return text
        return ""

    def final_event(self) -> StreamEvent:
        finish_reason = _finish_reason(self.stop_reason)
        if not self.got_text and finish_reason == "content_filter":
            raise self.call.error(FailureClass.CONTENT_FILTER, "the provider refused", usage=self.usage)
        if not self.done or not self.got_text:
            raise stream_ended_early(self.call, got_text=self.got_text, usage=self.usage)
        return StreamEvent(finish_reason=finish_reason, usage=self.usage)


class AnthropicAdapter(HttpAdapter):
    kind = "anthropic"
    capabilities = frozenset({"tools"})  # JSON output and images: not translated yet

    def call_for(self, request: ChatRequest, *, stream: bool) -> UpstreamCall:
        api_key = request.provider.api_key
        check_api_key(api_key)
        return UpstreamCall(
            url=f"{request.provider.base_url}/v1/messages",
            headers={
                "x-api-key": api_key,
                "anthropic-version": ANTHROPIC_VERSION,
                "accept": "text/event-stream" if stream else "application/json",
            },
            body=build_body(request, stream=stream),
            api_key=api_key,
            timeout=timeout_for(request),
            classify=classify,
        )

    def parse(self, call: UpstreamCall, data: Any, model: str) -> ChatResponse:
        return parse_message(call, data, model)

    def stream_state(self, call: UpstreamCall) -> _StreamState:
        return _StreamState(call)


ADAPTERS = (AnthropicAdapter(),)
