"""Google Gemini (Generative Language API v1beta): the protocol shell.

POST {base_url}/v1beta/models/{model}:generateContent, and :streamGenerateContent?alt=sse
for streams (each `data:` is a whole GenerateContentResponse holding a delta). The key goes
in the `x-goog-api-key` header, never in the URL.

Request: contents, systemInstruction, tools and toolConfig come from gemini_tools (turns,
images as inlineData, function calls and results); generationConfig carries temperature,
topP, maxOutputTokens, stopSequences, seed, presence/frequencyPenalty, and:
- response_format json_object -> responseMimeType "application/json"; json_schema -> the
  same plus responseSchema, the schema converted by gemini_schema (left out when it only
  says "an object");
- reasoning_effort -> thinkingConfig.thinkingBudget (none / minimal 0, or 128 on Pro models,
  which cannot switch thinking off; low 1024, medium 8192, high 24576), only when the step's
  model can reason (ChatRequest.can). Thoughts are never asked for (includeThoughts).
`cannot_serve` names what Gemini cannot take (a JSON Schema keyword and where it is, a tool
result for a call no earlier turn made), so the engine skips the step without a call.

Response: text parts that are not `thought: true` are the answer; functionCall parts are tool
calls (gemini_tools), and finish STOP with calls is "tool_calls". A stream sends each
functionCall whole: it becomes a delta with index, id and name, then one with the whole
arguments; a function call counts as content. MALFORMED_FUNCTION_CALL (and the other
function-call failures) without any content -> bad_response.

Usage is normalised: output_tokens = candidatesTokenCount + thoughtsTokenCount (Gemini
counts thinking apart), reasoning_tokens = thoughtsTokenCount, cached_tokens =
cachedContentTokenCount, input_tokens = promptTokenCount.

Error mapping (error.status, details, message, then HTTP status): ErrorInfo reason
API_KEY_INVALID or "API key not valid", UNAUTHENTICATED, PERMISSION_DENIED -> auth_error;
RESOURCE_EXHAUSTED -> rate_limited (RetryInfo retryDelay as Retry-After);
FAILED_PRECONDITION (billing / unsupported location) -> quota_exhausted; other
INVALID_ARGUMENT/400 -> invalid_request, or context_length when the message says the input
"exceeds the maximum number of tokens"; NOT_FOUND -> invalid_request; INTERNAL/UNAVAILABLE
and 5xx -> server_error; DEADLINE_EXCEEDED / 504 -> timeout.

A stream has no end marker: it is complete once a chunk carried a finishReason.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from providers.engine.types import (
    ChatParams,
    ChatRequest,
    ChatResponse,
    FailureClass,
    Message,
    ProviderError,
    StreamEvent,
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
from .gemini_schema import SchemaRefused, to_gemini
from .gemini_tools import (
    CallIds,
    UntranslatableTurn,
    answer_parts,
    contents,
    tool_call,
    tool_deltas,
    tool_fields,
    untranslatable,
)
from .sse import SSEEvent

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "FINISH_REASON_UNSPECIFIED": None,
}
# Finish reasons of a function call that went wrong: without any content, a bad response.
CALL_FAILURES = {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"}
THINKING_BUDGETS = {"none": 0, "minimal": 0, "low": 1024, "medium": 8192, "high": 24576}
PRO_MIN_BUDGET = 128  # Pro models cannot switch thinking off; 128 tokens is the least they take
_PRO = re.compile(r"(?:^|[-/])pro(?:-|$)")
_STATUS_CLASSES = {
    "UNAUTHENTICATED": FailureClass.AUTH_ERROR,
    "PERMISSION_DENIED": FailureClass.AUTH_ERROR,
    "RESOURCE_EXHAUSTED": FailureClass.RATE_LIMITED,
    "FAILED_PRECONDITION": FailureClass.QUOTA_EXHAUSTED,
    "DEADLINE_EXCEEDED": FailureClass.TIMEOUT,
    "NOT_FOUND": FailureClass.INVALID_REQUEST,
    "INTERNAL": FailureClass.SERVER_ERROR,
    "UNAVAILABLE": FailureClass.SERVER_ERROR,
}
SCHEMA_PATH = "response_format.json_schema.schema"


def build_body(request: ChatRequest) -> dict[str, Any]:
    """The generateContent body; a request Gemini cannot take (see cannot_serve) raises
    invalid_request here (the engine skips such a step before calling it)."""
    params = request.params
    try:
        system, turns = contents(request.messages, request.model)
        body: dict[str, Any] = {"contents": turns, **tool_fields(params)}
        output = _output_config(params)
    except (SchemaRefused, UntranslatableTurn) as exc:
        raise ProviderError(FailureClass.INVALID_REQUEST, exc.reason) from None
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    config = {
        "temperature": params.temperature,
        "topP": params.top_p,
        "maxOutputTokens": params.max_tokens,
        "stopSequences": list(params.stop) or None,
        "seed": params.seed,
        "presencePenalty": params.presence_penalty,
        "frequencyPenalty": params.frequency_penalty,
        "thinkingConfig": _thinking(request),
    }
    config = {name: value for name, value in config.items() if value is not None} | output
    if config:
        body["generationConfig"] = config
    return body


def _output_config(params: ChatParams) -> dict[str, Any]:
    """responseMimeType (and responseSchema) for a JSON response format; raises SchemaRefused."""
    kind = (params.response_format or {}).get("type")
    if kind not in ("json_object", "json_schema"):
        return {}
    config: dict[str, Any] = {"responseMimeType": "application/json"}
    schema = (
        (params.response_format.get("json_schema") or {}).get("schema") if kind == "json_schema" else None
    )
    if schema:
        converted = to_gemini(schema, SCHEMA_PATH, ordering=True)
        if converted.get("type") != "OBJECT" or converted.get("properties"):  # not just "any object"
            config["responseSchema"] = converted
    return config


def _thinking(request: ChatRequest) -> dict[str, int] | None:
    effort = request.params.reasoning_effort
    if effort not in THINKING_BUDGETS or not request.can("reasoning"):
        return None
    budget = THINKING_BUDGETS[effort]
    if budget == 0 and _PRO.search(request.model.lower()):
        budget = PRO_MIN_BUDGET
    return {"thinkingBudget": budget}


def cannot_serve(messages: tuple[Message, ...], params: ChatParams) -> str | None:
    """Why Gemini cannot carry this request (a schema keyword, an unnamed tool result), or None."""
    try:
        tool_fields(params)
        _output_config(params)
    except SchemaRefused as exc:
        return exc.reason
    return untranslatable(messages)


def classify(status: int | None, payload: Any, text: str) -> tuple[FailureClass, str]:
    if isinstance(payload, list) and payload:
        payload = payload[0]
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        error = {"message": text.strip()[:300]}
    message, name = str(error.get("message") or f"HTTP {status}"), str(error.get("status") or "")
    details = error.get("details") if isinstance(error.get("details"), list) else []
    reasons = {str(d.get("reason")) for d in details if isinstance(d, dict) and d.get("reason")}
    detail = message + (f" [{name}{'/' + ','.join(sorted(reasons)) if reasons else ''}]" if name else "")
    lowered = message.lower()
    if "API_KEY_INVALID" in reasons or "api key not valid" in lowered:
        return FailureClass.AUTH_ERROR, detail
    if name in _STATUS_CLASSES:
        return _STATUS_CLASSES[name], detail
    if name == "INVALID_ARGUMENT" or status == 400:
        if "exceeds the maximum number of tokens" in lowered:
            return FailureClass.CONTEXT_LENGTH, detail
        return FailureClass.INVALID_REQUEST, detail
    if status == 504:
        return FailureClass.TIMEOUT, detail
    return default_classify(status, detail)


def parse_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    thoughts = count(raw.get("thoughtsTokenCount"))
    return Usage(
        input_tokens=count(raw.get("promptTokenCount")),
        output_tokens=count(raw.get("candidatesTokenCount")) + thoughts,
        cached_tokens=count(raw.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
    )


def _finish_reason(raw: Any) -> str | None:
    if not isinstance(raw, str):
        return None
    return FINISH_REASONS.get(raw, raw.lower())


def _candidate_parts(candidate: dict[str, Any]) -> Any:
    content = candidate.get("content")
    return content.get("parts") if isinstance(content, dict) else None


def _first_candidate(call: UpstreamCall, data: Any, usage: Usage | None) -> dict[str, Any] | None:
    """The first candidate of a response; raises for an error or a blocked prompt."""
    if not isinstance(data, dict):
        raise call.error(FailureClass.BAD_RESPONSE, "a response that is not a JSON object")
    if data.get("error"):
        raise error_from_payload(call, None, data, "", usage=usage)
    candidates = data.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        return candidates[0]
    feedback = data.get("promptFeedback")
    block_reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if block_reason:
        raise call.error(FailureClass.CONTENT_FILTER, f"the prompt was blocked: {block_reason}", usage=usage)
    return None


def _no_answer(call: UpstreamCall, raw_finish: Any, usage: Usage | None) -> ProviderError | None:
    """The error for an answer without any content that ended for a reason that explains it."""
    if _finish_reason(raw_finish) == "content_filter":
        return call.error(FailureClass.CONTENT_FILTER, f"the answer was blocked: {raw_finish}", usage=usage)
    if raw_finish in CALL_FAILURES:
        return call.error(
            FailureClass.BAD_RESPONSE, f"the model's function call failed: {raw_finish}", usage=usage
        )
    return None


def _with_calls(finish_reason: str | None, has_calls: bool) -> str | None:
    """Gemini ends an answer that calls functions with STOP; OpenAI's vocabulary says tool_calls."""
    return "tool_calls" if has_calls and finish_reason in ("stop", None) else finish_reason


def parse_response(call: UpstreamCall, data: Any, model: str) -> ChatResponse:
    usage = parse_usage(data.get("usageMetadata")) if isinstance(data, dict) else None
    candidate = _first_candidate(call, data, usage)
    if candidate is None:
        raise call.error(FailureClass.BAD_RESPONSE, "a 200 response without candidates", usage=usage)
    text, calls = answer_parts(_candidate_parts(candidate))
    error = None if text or calls else _no_answer(call, candidate.get("finishReason"), usage)
    if error is not None:
        raise error
    ids = CallIds(data.get("responseId"))
    return ChatResponse(
        text=text,
        finish_reason=_with_calls(_finish_reason(candidate.get("finishReason")), bool(calls)),
        usage=usage,
        model=str(data.get("modelVersion") or model),
        response_id=str(data.get("responseId") or ""),
        tool_calls=tuple(tool_call(c, ids) for c in calls),
    )


class _StreamState:
    """What a stream has said so far: text and whole function calls, chunk by chunk."""

    def __init__(self, call: UpstreamCall) -> None:
        self.call = call
        self.got_text = False  # any content: text or a function call
        self.finished = False
        self.raw_finish: Any = None
        self.usage: Usage | None = None
        self.ids: CallIds | None = None
        self.tool_deltas: tuple[ToolCallDelta, ...] = ()  # the last event's tool-call pieces

    def feed(self, event: SSEEvent) -> str:
        self.tool_deltas = ()
        chunk = parse_json(self.call, event.data, what="stream event")
        if isinstance(chunk, dict) and isinstance(chunk.get("usageMetadata"), dict):
            self.usage = parse_usage(chunk["usageMetadata"])
        candidate = _first_candidate(self.call, chunk, self.usage)
        if candidate is None:
            return ""
        if candidate.get("finishReason"):
            self.finished = True
            self.raw_finish = candidate["finishReason"]
        text, calls = answer_parts(_candidate_parts(candidate))
        if calls:
            self.ids = self.ids or CallIds(chunk.get("responseId"))
            self.tool_deltas = tool_deltas(calls, self.ids)
        self.got_text = self.got_text or bool(text) or bool(calls)
        return text

    def final_event(self) -> StreamEvent:
        error = None if self.got_text else _no_answer(self.call, self.raw_finish, self.usage)
        if error is not None:
            raise error
        if not self.finished or not self.got_text:
            raise stream_ended_early(self.call, got_text=self.got_text, usage=self.usage)
        finish_reason = _with_calls(_finish_reason(self.raw_finish), self.ids is not None)
        return StreamEvent(finish_reason=finish_reason, usage=self.usage)


class GeminiAdapter(HttpAdapter):
    kind = "gemini"
    capabilities = frozenset({"tools", "parallel_tools", "images", "json_object", "json_schema", "reasoning"})
    inline_images = True  # Gemini cannot fetch image URLs: the engine sends them as inlineData

    def cannot_serve(self, messages: tuple[Message, ...], params: ChatParams) -> str | None:
        return cannot_serve(messages, params)

    def call_for(self, request: ChatRequest, *, stream: bool) -> UpstreamCall:
        api_key = request.provider.api_key
        check_api_key(api_key)
        model = quote(request.model.removeprefix("models/"), safe="-._~@")
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return UpstreamCall(
            url=f"{request.provider.base_url}/v1beta/models/{model}:{method}",
            headers={
                "x-goog-api-key": api_key,
                "accept": "text/event-stream" if stream else "application/json",
            },
            body=build_body(request),
            api_key=api_key,
            timeout=timeout_for(request),
            classify=classify,
        )

    def parse(self, call: UpstreamCall, data: Any, model: str) -> ChatResponse:
        return parse_response(call, data, model)

    def stream_state(self, call: UpstreamCall) -> _StreamState:
        return _StreamState(call)


ADAPTERS = (GeminiAdapter(),)
