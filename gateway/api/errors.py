"""Every failure as OpenAI's error shape with the right status.

`{"error": {"message", "type", "param", "code"}}`, which every OpenAI SDK parses. RANA has
already retried and fallen back by the time it answers 502/504, so those carry
`x-should-retry: false` (the OpenAI SDKs obey it); limits carry Retry-After. A provider's
401 is RANA's stored key failing, never the caller's: it is a 502 naming the provider.

When every step was rate-limited or skipped by an open circuit, waiting helps: 429 if any
rate limit was involved, else 503, each with Retry-After (the soonest step's, in whole
seconds rounded up) and without `x-should-retry: false`, so SDKs back off and retry. A chain
with no usable step is a 503 that retrying cannot cure (`x-should-retry: false`).
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.api.http import ApiResponse, json_response
from gateway.api.render import rana_headers, rana_meta
from gateway.services.keys import KeyRejected
from gateway.services.limits import RateLimited
from providers.services import redact
from providers.types import (
    AllProvidersFailed,
    BudgetExceeded,
    ChainNotFound,
    EngineError,
    InvalidRequest,
    NoUsableStep,
    RetryLater,
)
from rana_site.db_busy import BUSY_MESSAGE, RETRY_AFTER_S, is_database_busy

log = logging.getLogger("rana.gateway")

# Failure classes that mean the caller's request is wrong, whatever provider answers it.
_CALLER_FAULTS = {"invalid_request", "context_length", "content_filter"}
_NO_RETRY = ("x-should-retry", "false")
_CLOSE = ("connection", "close")


class ApiError(Exception):
    """An error answer: status, OpenAI error fields, extra headers and body fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # OpenAI's field name
        code: str | None = None,
        param: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or []
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return {"error": error, **self.extra}

    def response(self) -> ApiResponse:
        return json_response(self.status, self.body(), self.headers)


def body_too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"The request body is larger than {limit} bytes (RANA_API_MAX_BODY_BYTES).",
        code="request_too_large",
        headers=[_CLOSE],  # what is left of the body is never read: the connection cannot be reused
    )


def body_timeout(timeout_s: float) -> ApiError:
    return ApiError(
        408,
        f"The request body did not arrive within {timeout_s:g} s (RANA_API_BODY_TIMEOUT_S).",
        code="request_timeout",
        headers=[_CLOSE],
    )


def overloaded(limit: int) -> ApiError:
    """More requests in flight in this worker than RANA_MAX_CONCURRENCY: come back in a second."""
    return ApiError(
        503,
        f"RANA is serving as many requests as it allows at once ({limit} per worker, "
        "RANA_MAX_CONCURRENCY); retry shortly.",
        type="server_error",
        code="server_overloaded",
        headers=[("retry-after", "1")],
    )


def engine_failure(exc: EngineError, chain: str) -> ApiError:
    """AllProvidersFailed (or a stream that broke before its first token) as an answer."""
    failure = str(exc.failure_class)
    meta = rana_meta(
        request_id=getattr(exc, "request_id", None),
        chain=chain,
        provider=None,
        model=None,
        fallback=False,
        attempts=exc.attempts,
        cost_usd=exc.cost_usd,
        route=getattr(exc, "route", None),
    )
    headers = [h for h in rana_headers(meta) if h[0] not in ("x-rana-provider", "x-rana-model")]
    message = redact(str(exc))
    if failure == "capability_skipped":
        message = f"No step of the chain '{chain}' can serve this request. " + "; ".join(
            f"step {a.step_position + 1} ({a.provider_name} / {a.model}): {a.error_message}"
            for a in exc.attempts
        )
        return ApiError(400, message, code="unsupported_capability", headers=headers, extra={"rana": meta})
    if failure in _CALLER_FAULTS:
        return ApiError(400, message, code=failure, headers=headers, extra={"rana": meta})
    later = getattr(exc, "retry_later", None)
    if later is not None:
        return retry_later(later, chain, message, headers, meta)
    headers.append(_NO_RETRY)
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after:
        headers.append(("retry-after", str(max(1, round(retry_after)))))
    if isinstance(exc, AllProvidersFailed) and (exc.deadline_exceeded or failure == "timeout"):
        return ApiError(
            504, message, type="timeout", code="deadline_exceeded", headers=headers, extra={"rana": meta}
        )
    return ApiError(502, message, type="upstream_error", code=failure, headers=headers, extra={"rana": meta})


def retry_later(
    later: RetryLater, chain: str, detail: str, headers: list[tuple[str, str]], meta: dict[str, Any]
) -> ApiError:
    """Every step is rate-limited (429) or behind an open circuit (503): retry in Retry-After."""
    wait = later.whole_seconds
    headers = [*headers, ("retry-after", str(wait))]
    extra = {"rana": meta}
    if later.reason == "rate_limited":
        message = f"Every provider of the chain '{chain}' is rate-limited; try again in {wait} s ({detail})."
        return ApiError(
            429, message, type="rate_limit_error", code="rate_limit_exceeded", headers=headers, extra=extra
        )
    message = f"Every provider of the chain '{chain}' has its circuit open; next try in {wait} s ({detail})."
    return ApiError(503, message, type="server_error", code="circuit_open", headers=headers, extra=extra)


def api_error(exc: Exception, *, chain: str = "") -> ApiError:
    """The answer for anything the handlers raise; unexpected errors are logged as 500s."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, KeyRejected):
        return ApiError(
            401, str(exc), code="invalid_api_key", headers=[("www-authenticate", 'Bearer realm="rana"')]
        )
    if isinstance(exc, InvalidRequest):
        return ApiError(400, str(exc), param=exc.field)
    if isinstance(exc, ChainNotFound):
        message = (
            f"The model '{exc.slug}' does not exist: name one of the chains listed by GET /v1/models."
            if exc.slug
            else str(exc)
        )
        return ApiError(404, message, code="model_not_found", param="model")
    if isinstance(exc, NoUsableStep):
        return ApiError(
            503, str(exc), type="server_error", code="no_usable_step", param="model", headers=[_NO_RETRY]
        )
    if isinstance(exc, RateLimited):
        headers = [("retry-after", str(exc.retry_after_s)), ("x-ratelimit-limit-requests", str(exc.limit))]
        return ApiError(429, str(exc), type="rate_limit_error", code="rate_limit_exceeded", headers=headers)
    if isinstance(exc, BudgetExceeded):
        headers = [("retry-after", str(exc.retry_after_s)), _NO_RETRY]
        if getattr(exc, "request_id", None):
            headers.append(("x-rana-request-id", str(exc.request_id)))
        return ApiError(429, str(exc), type="insufficient_quota", code="budget_exceeded", headers=headers)
    if isinstance(exc, EngineError):
        return engine_failure(exc, chain)
    if is_database_busy(exc):
        log.error("the gateway met a busy database: %s", exc)
        headers = [("retry-after", str(RETRY_AFTER_S))]
        return ApiError(503, BUSY_MESSAGE, type="server_error", code="database_busy", headers=headers)
    log.exception("the gateway failed on an unexpected error", exc_info=exc)
    return ApiError(500, "RANA failed on an unexpected error; it has been logged.", type="server_error")
