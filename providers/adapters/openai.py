"""OpenAI chat completions: api.openai.com and any OpenAI-compatible server (Ollama, vLLM...).

POST {base_url}/chat/completions, where base_url includes "/v1". One protocol, two kinds:
"openai" and "openai_compatible" (the key is optional for the latter).

Error mapping (status, then the body's error.code / error.type / message):
- code or type insufficient_quota (or billing_*) -> quota_exhausted, whatever the status;
- 401/403 -> auth_error; other 429 -> rate_limited;
- 400 with code context_length_exceeded or "maximum context length" -> context_length;
- 400 with code content_policy_violation / content_filter -> content_filter;
- other 400/404/422 -> invalid_request; 408 -> timeout; 409/5xx -> server_error.
A 200 without choices or with a body that is not JSON -> bad_response; finish_reason
"content_filter" (or a refusal) with no text -> content_filter.

Streams end with `data: [DONE]`. Some compatible servers omit it: a stream that reached a
finish_reason and then ended cleanly is accepted as complete.
"""

from __future__ import annotations

from typing import Any

from providers.engine.types import (
    ChatRequest,
    ChatResponse,
    Choice,
    FailureClass,
    ImagePart,
    Message,
    StreamEvent,
    ToolCall,
    ToolCallDelta,
    Usage,
)

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

_COMPLETION_TOKENS_MODELS = ("o1", "o3", "o4", "gpt-5")
_QUOTA_CODES = {"insufficient_quota", "billing_hard_limit_reached", "billing_not_active"}
_FILTER_CODES = {"content_policy_violation", "content_filter"}
_STREAM_ERROR_TYPES = {
    "rate_limit_exceeded": FailureClass.RATE_LIMITED,
    "requests": FailureClass.RATE_LIMITED,
    "tokens": FailureClass.RATE_LIMITED,
    "invalid_request_error": FailureClass.INVALID_REQUEST,
    "invalid_api_key": FailureClass.AUTH_ERROR,
}


def build_body(request: ChatRequest, *, stream: bool) -> dict[str, Any]:
    params = request.params
    uses_completion_tokens = request.model.lower().startswith(_COMPLETION_TOKENS_MODELS)
    optional = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_completion_tokens" if uses_completion_tokens else "max_tokens": params.max_tokens,
        "stop": list(params.stop) or None,
        "seed": params.seed,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "user": params.user,
    }
    body: dict[str, Any] = {"model": request.model, "messages": [_message(m) for m in request.messages]}
    body.update({name: value for name, value in optional.items() if value is not None})
    if params.tools:
        body["tools"] = list(params.tools)
        if params.tool_choice is not None:
            body["tool_choice"] = params.tool_choice
        if params.parallel_tool_calls is not None and request.can("parallel_tools"):
            body["parallel_tool_calls"] = params.parallel_tool_calls
    if params.response_format is not None:
        body["response_format"] = params.response_format
    if params.reasoning_effort is not None and request.can("reasoning"):
        body["reasoning_effort"] = params.reasoning_effort
    if params.n is not None and params.n > 1:
        body["n"] = params.n
    if params.logprobs:
        body["logprobs"] = True
        if params.top_logprobs is not None:
            body["top_logprobs"] = params.top_logprobs
    if stream:
        body["stream"] = True
        if request.provider.options.get("stream_usage", True):
            body["stream_options"] = {"include_usage": True}
    return body


def _message(message: Message) -> dict[str, Any]:
    """One message in OpenAI's shape: tool calls on an assistant turn, the call id on a tool turn."""
    out: dict[str, Any] = {"role": message.role, "content": _content(message)}
    if message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def _content(message: Message) -> str | list[dict[str, Any]]:
    """Text, or the turn's parts in order when it carries images (sent by URL, as received)."""
    if not message.parts:
        return message.content
    out: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, ImagePart):
            image = {"url": part.url}
            if part.detail:
                image["detail"] = part.detail
            out.append({"type": "image_url", "image_url": image})
        else:
            out.append({"type": "text", "text": part.text})
    return out


def _tool_calls(raw: Any) -> tuple[ToolCall, ...]:
    calls = []
    for call in raw if isinstance(raw, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and function.get("name"):
            arguments = function.get("arguments")
            calls.append(ToolCall(str(call.get("id") or ""), str(function["name"]), str(arguments or "")))
    return tuple(calls)


def _tool_deltas(raw: Any) -> tuple[ToolCallDelta, ...]:
    deltas = []
    for piece in raw if isinstance(raw, list) else ():
        if not isinstance(piece, dict) or not isinstance(piece.get("index", 0), int):
            continue
        function = piece.get("function") if isinstance(piece.get("function"), dict) else {}
        deltas.append(
            ToolCallDelta(
                index=piece.get("index", 0),
                id=piece.get("id") or None,
                name=function.get("name") or None,
                arguments=str(function.get("arguments") or ""),
            )
        )
    return tuple(deltas)


def classify(status: int | None, payload: Any, text: str) -> tuple[FailureClass, str]:
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or "")
        code, kind = str(error.get("code") or ""), str(error.get("type") or "")
    else:  # some compatible servers send {"error": "text"}, some an HTML page
        message = error if isinstance(error, str) else text.strip()[:300]
        code = kind = ""
    message = message or f"HTTP {status}"
    detail = f"{message} [{code or kind}]" if code or kind else message
    lowered = message.lower()
    if _QUOTA_CODES & {code, kind}:
        return FailureClass.QUOTA_EXHAUSTED, detail
    if status in (400, None):
        if code == "context_length_exceeded" or "maximum context length" in lowered:
            return FailureClass.CONTEXT_LENGTH, detail
        if _FILTER_CODES & {code, kind}:
            return FailureClass.CONTENT_FILTER, detail
    if status is None:
        return _STREAM_ERROR_TYPES.get(code or kind, FailureClass.SERVER_ERROR), detail
    return default_classify(status, detail)


def parse_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt_details = raw.get("prompt_tokens_details")
    completion_details = raw.get("completion_tokens_details")
    return Usage(
        input_tokens=count(raw.get("prompt_tokens")),
        output_tokens=count(raw.get("completion_tokens")),
        cached_tokens=count(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else 0,
        reasoning_tokens=(
            count(completion_details.get("reasoning_tokens")) if isinstance(completion_details, dict) else 0
        ),
    )


def content_text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or "") for part in content if isinstance(part, dict) and "text" in part
        )
    return ""


def _more_choices(call: UpstreamCall, choices: list[Any]) -> tuple[Choice, ...]:
    """Choices 1.. (n > 1), in index order."""
    more = []
    for choice in sorted(choices[1:], key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0):
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise call.error(FailureClass.BAD_RESPONSE, "a 200 response whose choice has no message")
        finish = choice.get("finish_reason")
        more.append(
            Choice(
                content_text(message.get("content")),
                finish if isinstance(finish, str) else None,
                _tool_calls(message.get("tool_calls")),
                choice.get("logprobs"),
            )
        )
    return tuple(more)


def parse_completion(call: UpstreamCall, data: Any, model: str) -> ChatResponse:
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        if isinstance(data, dict) and data.get("error"):
            raise error_from_payload(call, None, data, "")
        raise call.error(FailureClass.BAD_RESPONSE, "a 200 response without choices")
    choices = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise call.error(FailureClass.BAD_RESPONSE, "a 200 response whose choice has no message")
    text = content_text(message.get("content"))
    finish_reason = choice.get("finish_reason")
    usage = parse_usage(data.get("usage"))
    refusal = message.get("refusal") if isinstance(message.get("refusal"), str) else None
    tool_calls = _tool_calls(message.get("tool_calls"))
    if not text and not tool_calls and not refusal and finish_reason == "content_filter":
        raise call.error(
            FailureClass.CONTENT_FILTER, "the provider refused: finish_reason content_filter", usage=usage
        )
    return ChatResponse(
        text=text,
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        usage=usage,
        model=str(data.get("model") or model),
        response_id=str(data.get("id") or ""),
        tool_calls=tool_calls,
        logprobs=choice.get("logprobs"),
        more_choices=_more_choices(call, choices),
        refusal=refusal or None,
    )


class _StreamState:
    """What a stream has said so far."""

    def __init__(self, call: UpstreamCall) -> None:
        self.call = call
        self.done = False
        self.got_text = False
        self.refused = False
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.tool_deltas: tuple[ToolCallDelta, ...] = ()  # the last event's tool-call pieces
        self.logprobs: Any = None  # the last event's logprobs
        self.refusal = ""  # the last event's refusal piece

    def feed(self, event: SSEEvent) -> str:
        self.tool_deltas = ()
        self.logprobs = None
        self.refusal = ""
        data = event.data
        if self.done:
            return ""
        if data.strip() == "[DONE]":
            self.done = True
            return ""
        chunk = parse_json(self.call, data, what="stream event")
        if not isinstance(chunk, dict):
            raise self.call.error(FailureClass.BAD_RESPONSE, "a stream event that is not a JSON object")
        if chunk.get("error"):
            raise error_from_payload(self.call, None, chunk, data, usage=self.usage)
        if isinstance(chunk.get("usage"), dict):
            self.usage = parse_usage(chunk["usage"])
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return ""
        choice = choices[0]
        if isinstance(choice.get("finish_reason"), str):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        self.logprobs = choice.get("logprobs")
        piece = delta.get("refusal")
        self.refusal = piece if isinstance(piece, str) else ""
        self.refused = self.refused or bool(self.refusal)
        self.tool_deltas = _tool_deltas(delta.get("tool_calls"))
        text = content_text(delta.get("content"))
        self.got_text = self.got_text or bool(text) or bool(self.tool_deltas) or bool(self.refusal)
        return text

    def final_event(self) -> StreamEvent:
        if not self.got_text and self.finish_reason == "content_filter":
            raise self.call.error(FailureClass.CONTENT_FILTER, "the provider refused", usage=self.usage)
        complete = self.done or (self.got_text and self.finish_reason is not None)
        if not complete or not self.got_text:
            raise stream_ended_early(self.call, got_text=self.got_text, usage=self.usage)
        return StreamEvent(finish_reason=self.finish_reason, usage=self.usage)


class OpenAIAdapter(HttpAdapter):
    """The OpenAI chat-completions protocol, registered once per kind that speaks it."""

    # Native; a model's own limits come from the capability table (ChatRequest.capabilities).
    capabilities = frozenset(
        {"tools", "parallel_tools", "images", "json_object", "json_schema", "reasoning", "n", "logprobs"}
    )

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def call_for(self, request: ChatRequest, *, stream: bool) -> UpstreamCall:
        api_key = request.provider.api_key
        check_api_key(api_key)
        headers = {"accept": "text/event-stream" if stream else "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        return UpstreamCall(
            url=f"{request.provider.base_url}/chat/completions",
            headers=headers,
            body=build_body(request, stream=stream),
            api_key=api_key,
            timeout=timeout_for(request),
            classify=classify,
        )

    def parse(self, call: UpstreamCall, data: Any, model: str) -> ChatResponse:
        return parse_completion(call, data, model)

    def stream_state(self, call: UpstreamCall) -> _StreamState:
        return _StreamState(call)


ADAPTERS = (OpenAIAdapter("openai"), OpenAIAdapter("openai_compatible"))
