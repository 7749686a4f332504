"""Anthropic Messages API: POST {base_url}/v1/messages.

Request shape: the conversation (system, alternating turns, tool_use / tool_result and image
blocks) is built by anthropic_messages; tools and tool_choice by anthropic_tools; JSON output
(response_format) by anthropic_json, as structured outputs (`output_format` and the
`anthropic-beta: structured-outputs-2025-11-13` header, when the provider option
`structured_outputs` is true) or a forced answer tool; extended thinking (reasoning_effort)
by anthropic_thinking. `max_tokens` is required by the API: the request's, else the provider
option `max_tokens`, else 4096 (plus the thinking budget when thinking is on).
temperature, top_p, stop (stop_sequences) and user (metadata.user_id) are sent as given
(not temperature / top_p with thinking on); seed and the penalties have no equivalent.

Response: the text blocks, in order, are the answer (thinking and redacted_thinking blocks
never are); tool_use blocks are tool calls, except the JSON answer tool whose input is answer
text. stop_reason end_turn / stop_sequence -> stop, max_tokens -> length, refusal ->
content_filter, tool_use -> tool_calls (stop when only the JSON answer tool was used).

Usage is normalised: input_tokens = input_tokens + cache_read_input_tokens +
cache_creation_input_tokens (Anthropic counts them apart), cached_tokens = cache reads;
output_tokens as reported (thinking included; reasoning_tokens stays 0, as Anthropic does
not report it apart).

Error mapping (error.type, then status): overloaded_error (529) and rate_limit_error (429)
-> rate_limited; invalid_request_error mentioning credit balance / spend or usage limit /
billing -> quota_exhausted, "prompt is too long" -> context_length, else invalid_request;
authentication_error / permission_error -> auth_error; not_found_error, request_too_large
-> invalid_request; billing_error -> quota_exhausted; timeout_error -> timeout;
api_error -> server_error. An `error` event inside a stream maps the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers.engine.types import ChatRequest, ChatResponse, FailureClass, StreamEvent, ToolCallDelta, Usage

from .anthropic_json import (
    STRUCTURED_OUTPUTS_BETA,
    AnswerStream,
    AnswerTool,
    JsonOutput,
    json_fields,
    json_output,
)
from .anthropic_messages import build_messages
from .anthropic_thinking import add_thinking, thinking_budget
from .anthropic_tools import ToolStream, parse_tool_calls, tool_fields
from .common import (
    HttpAdapter,
    UpstreamCall,
    count,
    default_classify,
    error_from_payload,
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


@dataclass(frozen=True, slots=True)
class AnthropicCall(UpstreamCall):
    """A call that also knows its JSON answer tool, so the answer reads back as text."""

    answer: AnswerTool | None = None


def compose(request: ChatRequest, *, stream: bool) -> tuple[dict[str, Any], JsonOutput | None]:
    """The request body, and how it asks for JSON (None: it does not)."""
    params = request.params
    system, messages = build_messages(request.messages)
    output = json_output(request)
    fields = tool_fields(params)
    if output is not None:
        fields = json_fields(output, fields)
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": _max_tokens(request),
        "messages": messages,
        **fields,
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
    forced = (body.get("tool_choice") or {}).get("type") in ("any", "tool")
    budget = thinking_budget(request, forced_tool=forced)
    if budget is not None:
        add_thinking(body, budget)
    return body, output


def build_body(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    return compose(request, stream=stream)[0]


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


def _finish_reason(stop_reason: Any, *, answered: bool = False) -> str | None:
    """OpenAI's finish reason; `answered`: the JSON answer tool was the only tool used."""
    if not isinstance(stop_reason, str):
        return None
    if answered and stop_reason == "tool_use":
        return "stop"
    return STOP_REASONS.get(stop_reason, stop_reason)


def parse_message(call: UpstreamCall, data: Any, model: str) -> ChatResponse:
    if isinstance(data, dict) and data.get("type") == "error":
        raise error_from_payload(call, None, data, "")
    content = data.get("content") if isinstance(data, dict) else None
    if not isinstance(content, list):
        raise call.error(FailureClass.BAD_RESPONSE, "a 200 response without content")
    answer: AnswerTool | None = getattr(call, "answer", None)
    texts, answered = [], False
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif answer is not None and block.get("type") == "tool_use" and block.get("name") == answer.name:
            if not answered:  # the JSON answer, as text where its block stands
                texts.append(answer.text(block.get("input", {})))
            answered = True
    text = "".join(texts)
    tool_calls = parse_tool_calls(content, skip=answer.name if answer else None)
    usage = parse_usage(data.get("usage"))
    finish_reason = _finish_reason(data.get("stop_reason"), answered=answered and not tool_calls)
    if not text and finish_reason == "content_filter":
        raise call.error(FailureClass.CONTENT_FILTER, "the provider refused (refusal)", usage=usage)
    return ChatResponse(
        text=text,
        finish_reason=finish_reason,
        usage=usage,
        model=str(data.get("model") or model),
        response_id=str(data.get("id") or ""),
        tool_calls=tool_calls,
    )


class _StreamState:
    """What a stream has said so far; usage fields merge as message_delta updates them.

    Text comes from text_delta events and from the JSON answer tool's input_json_delta
    events; thinking_delta / signature_delta events and redacted_thinking blocks are dropped.
    """

    def __init__(self, call: UpstreamCall) -> None:
        self.call = call
        self.done = False
        self.got_text = False
        self.stop_reason: str | None = None
        self._usage: dict[str, Any] = {}
        self.tools = ToolStream()
        answer: AnswerTool | None = getattr(call, "answer", None)
        self.answer = AnswerStream(answer) if answer is not None else None
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
        elif kind in ("content_block_start", "content_block_delta", "content_block_stop"):
            text = self._block_event(kind, payload)
            self.got_text = self.got_text or bool(text) or bool(self.tool_deltas)
            return text
        return ""

    def _block_event(self, kind: str, payload: dict[str, Any]) -> str:
        index = payload.get("index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else 0
        answer = self.answer
        if kind == "content_block_stop":
            if answer is not None and answer.owns(index):
                return answer.close()
            self.tool_deltas = self.tools.stop(index)
            return ""
        block = payload.get("content_block" if kind == "content_block_start" else "delta")
        if not isinstance(block, dict):
            return ""
        if block.get("type") == "tool_use":
            if answer is None or not answer.opens(index, block):
                self.tool_deltas = self.tools.start(index, block)
        elif block.get("type") == "input_json_delta":
            if answer is not None and answer.owns(index):
                fragment = block.get("partial_json")
                return answer.fragment(fragment) if isinstance(fragment, str) else ""
            self.tool_deltas = self.tools.delta(index, block)
        elif block.get("type") in ("text", "text_delta"):
            text = block.get("text")
            return text if isinstance(text, str) else ""
        return ""

    def final_event(self) -> StreamEvent:
        answered = self.answer is not None and self.answer.used and not self.tools.started
        finish_reason = _finish_reason(self.stop_reason, answered=answered)
        if not self.got_text and finish_reason == "content_filter":
            raise self.call.error(FailureClass.CONTENT_FILTER, "the provider refused", usage=self.usage)
        if not self.done or not self.got_text:
            raise stream_ended_early(self.call, got_text=self.got_text, usage=self.usage)
        return StreamEvent(finish_reason=finish_reason, usage=self.usage)


class AnthropicAdapter(HttpAdapter):
    kind = "anthropic"
    # Images go by URL (Anthropic fetches them) or inline, so inline_images stays False.
    capabilities = frozenset({"tools", "parallel_tools", "images", "json_object", "json_schema", "reasoning"})

    def call_for(self, request: ChatRequest, *, stream: bool) -> AnthropicCall:
        api_key = request.provider.api_key
        check_api_key(api_key)
        body, output = compose(request, stream=stream)
        headers = {
            "x-api-key": api_key,
            "anthropic-version": ANTHROPIC_VERSION,
            "accept": "text/event-stream" if stream else "application/json",
        }
        if output is not None and output.output_format is not None:
            headers["anthropic-beta"] = STRUCTURED_OUTPUTS_BETA
        return AnthropicCall(
            url=f"{request.provider.base_url}/v1/messages",
            headers=headers,
            body=body,
            api_key=api_key,
            timeout=timeout_for(request),
            classify=classify,
            answer=output.tool if output is not None else None,
        )

    def parse(self, call: UpstreamCall, data: Any, model: str) -> ChatResponse:
        return parse_message(call, data, model)

    def stream_state(self, call: UpstreamCall) -> _StreamState:
        return _StreamState(call)


ADAPTERS = (AnthropicAdapter(),)
