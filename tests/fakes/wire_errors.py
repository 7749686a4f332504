"""Error bodies, exactly as each provider sends them, for the named errors of faults.py."""

from __future__ import annotations

from typing import Any

from .faults import Fault
from .wire import Reply, frame

# name -> (status, type, code, message); {model} and {key} are filled in.
OPENAI = {
    "rate_limited": (
        429,
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for {model} in organization org-fake on requests per min (RPM): "
        "Limit 3, Used 3, Requested 1. Please try again in 20s.",
    ),
    "insufficient_quota": (
        429,
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    "auth": (401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided: {key}."),
    "permission": (403, "invalid_request_error", None, "You are not allowed to sample from this model."),
    "context_length": (
        400,
        "invalid_request_error",
        "context_length_exceeded",
        "This model's maximum context length is 128000 tokens. However, your messages resulted in "
        "130412 tokens. Please reduce the length of the messages.",
    ),
    "content_filter": (
        400,
        "invalid_request_error",
        "content_policy_violation",
        "Your request was rejected as a result of our safety system.",
    ),
    "server_error": (
        500,
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    "overloaded": (503, "server_error", None, "The engine is currently overloaded, please try again later."),
    "not_found": (
        404,
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    "bad_request": (400, "invalid_request_error", "invalid_value", "Invalid value for 'temperature'."),
    "timeout": (408, "timeout", None, "Request timed out."),
}

ANTHROPIC = {
    "rate_limited": (
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit. Please try again later.",
    ),
    "insufficient_quota": (
        400,
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API. "
        "Please go to Plans & Billing to upgrade or purchase credits.",
    ),
    "auth": (401, "authentication_error", "invalid x-api-key"),
    "permission": (
        403,
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    "context_length": (400, "invalid_request_error", "prompt is too long: 212345 tokens > 200000 maximum"),
    "server_error": (500, "api_error", "Internal server error"),
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "not_found": (404, "not_found_error", "model: {model}"),
    "bad_request": (400, "invalid_request_error", "temperature: range: 0..1"),
    "timeout": (504, "timeout_error", "Request timed out"),
}

GEMINI = {
    "rate_limited": (
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    "insufficient_quota": (
        400,
        "FAILED_PRECONDITION",
        "Gemini API free tier is not available in your country. "
        "Please enable billing on your project in Google AI Studio.",
    ),
    "auth": (400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."),
    "permission": (
        403,
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity).",
    ),
    "context_length": (
        400,
        "INVALID_ARGUMENT",
        "The input token count (1212345) exceeds the maximum number of tokens allowed (1048576).",
    ),
    "server_error": (500, "INTERNAL", "An internal error has occurred. Please retry or report it."),
    "overloaded": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    "not_found": (
        404,
        "NOT_FOUND",
        "models/{model} is not found for API version v1beta, or is not supported for generateContent.",
    ),
    "bad_request": (400, "INVALID_ARGUMENT", "Invalid JSON payload received."),
    "timeout": (504, "DEADLINE_EXCEEDED", "The request timed out. Please try again."),
}

# Errors that these providers report as a 200 answer rather than an HTTP error.
SOFT = {("anthropic", "content_filter"), ("gemini", "content_filter")}


def _openai(fault: Fault, reply: Reply) -> tuple[int, dict[str, Any]]:
    status, kind, code, message = OPENAI[fault.error_name or ""]
    text = fault.message or message.format(model=reply.model, key=reply.api_key)
    return status, {"error": {"message": text, "type": kind, "param": None, "code": code}}


def _anthropic(fault: Fault, reply: Reply) -> tuple[int, dict[str, Any]]:
    status, kind, message = ANTHROPIC[fault.error_name or ""]
    text = fault.message or message.format(model=reply.model, key=reply.api_key)
    return status, {"type": "error", "error": {"type": kind, "message": text}, "request_id": "req_fake01"}


def _gemini_details(fault: Fault) -> list[dict[str, Any]]:
    details: list[dict[str, Any]] = []
    if fault.error_name == "auth":
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        )
    if fault.error_name == "rate_limited":
        violation = {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests"}
        details.append({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]})
    if fault.retry_delay is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": fault.retry_delay})
    return details


def _gemini(fault: Fault, reply: Reply) -> tuple[int, dict[str, Any]]:
    status, name, message = GEMINI[fault.error_name or ""]
    error: dict[str, Any] = {
        "code": fault.status_code or status,
        "message": fault.message or message.format(model=reply.model, key=reply.api_key),
        "status": name,
    }
    details = _gemini_details(fault)
    if details:
        error["details"] = details
    return status, {"error": error}


RENDER = {"openai": _openai, "anthropic": _anthropic, "gemini": _gemini}


def error_body(fault: Fault, reply: Reply) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of a named error, in the reply's protocol."""
    status, body = RENDER[reply.protocol](fault, reply)
    return fault.status_code or status, body


def stream_error_frame(fault: Fault, reply: Reply) -> str:
    """The protocol's in-stream error event."""
    _, body = error_body(fault, reply)
    if reply.protocol == "anthropic":
        return frame(body, event="error")
    return frame(body, eol="\r\n" if reply.protocol == "gemini" else "\n")
