"""Google Gemini (Generative Language API v1beta).

POST {base_url}/v1beta/models/{model}:generateContent, and :streamGenerateContent?alt=sse
for streams (each `data:` is a whole GenerateContentResponse holding a text delta). The key
goes in the `x-goog-api-key` header, never in the URL.

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

from typing import Any
from urllib.parse import quote

from providers.engine.types import ChatRequest, ChatResponse, FailureClass, StreamEvent, Usage

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


def build_body(request: ChatRequest) -> dict[str, Any]:
    params = request.params
    system, turns = merge_turns(request.messages, assistant_role="model")
    body: dict[str, Any] = {"contents": [{"role": role, "parts": [{"text": text}]} for role, text in turns]}
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
    }
    config = {name: value for name, value in config.items() if value is not None}
    if config:
        body["generationConfig"] = config
    return body


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


def _candidate_text(candidate: dict[str, Any]) -> str:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return ""
    return "".join(
        part["text"]
        for part in parts
        if isinstance(part, dict) and isinstance(part.get("text"), str) and not part.get("thought")
    )


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


def parse_response(call: UpstreamCall, data: Any, model: str) -> ChatResponse:
    usage = parse_usage(data.get("usageMetadata")) if isinstance(data, dict) else None
    candidate = _first_candidate(call, data, usage)
    if candidate is None:
        raise call.error(FailureClass.BAD_RESPONSE, "a 200 response without candidates", usage=usage)
    text = _candidate_text(candidate)
    finish_reason = _finish_reason(candidate.get("finishReason"))
    if not text and finish_reason == "content_filter":
        reason = candidate.get("finishReason")
        raise call.error(FailureClass.CONTENT_FILTER, f"the answer was blocked: {reason}", usage=usage)
    return ChatResponse(
        text=text,
        finish_reason=finish_reason,
        usage=usage,
        model=str(data.get("modelVersion") or model),
        response_id=str(data.get("responseId") or ""),
    )


class _StreamState:
    def __init__(self, call: UpstreamCall) -> None:
        self.call = call
        self.got_text = False
        self.finished = False
        self.finish_reason: str | None = None
        self.usage: Usage | None = None

    def feed(self, event: SSEEvent) -> str:
        data = event.data
        chunk = parse_json(self.call, data, what="stream event")
        if isinstance(chunk, dict) and isinstance(chunk.get("usageMetadata"), dict):
            self.usage = parse_usage(chunk["usageMetadata"])
        candidate = _first_candidate(self.call, chunk, self.usage)
        if candidate is None:
            return ""
        if candidate.get("finishReason"):
            self.finished = True
            self.finish_reason = _finish_reason(candidate["finishReason"])
        text = _candidate_text(candidate)
        self.got_text = self.got_text or bool(text)
        return text

    def final_event(self) -> StreamEvent:
        if not self.got_text and self.finish_reason == "content_filter":
            raise self.call.error(FailureClass.CONTENT_FILTER, "the answer was blocked", usage=self.usage)
        if not self.finished or not self.got_text:
            raise stream_ended_early(self.call, got_text=self.got_text, usage=self.usage)
        return StreamEvent(finish_reason=self.finish_reason, usage=self.usage)


class GeminiAdapter(HttpAdapter):
    kind = "gemini"

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
