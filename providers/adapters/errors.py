"""Shared failure mapping: transport errors and HTTP statuses to ProviderError.

Every ProviderError built here has the provider's key (and anything shaped like a key)
masked out of its message, and its message never includes request headers.

Transport errors (httpx), as classified here:
- ConnectTimeout, ReadTimeout, WriteTimeout, PoolTimeout -> timeout
  (PoolTimeout is our own pool being full; it is still "no answer in time").
- ConnectError (refused, DNS, TLS, RANA's upstream guard) -> connection_error.
- ReadError / WriteError (reset), RemoteProtocolError (peer closed mid-body, bad framing),
  CloseError, LocalProtocolError, UnsupportedProtocol, ProxyError -> connection_error:
  the exchange broke below HTTP, and moving on to the next step is the right reaction.
- DecodingError (broken gzip/brotli body; a body past the client's size cap,
  http_client.ResponseTooLarge) -> bad_response.

Status defaults (adapters refine them from the provider's error body):
401/403 -> auth_error; 402 -> quota_exhausted; 408 -> timeout; 429 and 529 -> rate_limited;
409 and 5xx -> server_error; other 4xx -> invalid_request; 3xx -> bad_response (RANA never
follows redirects, and a redirect means the base URL is wrong, which is not the caller's
fault, so the chain moves on instead of stopping); anything else -> bad_response.
"""

from __future__ import annotations

import httpx

from providers.engine.types import FailureClass, ProviderError, Usage
from providers.redaction import redact

MAX_MESSAGE_CHARS = 500

_TIMEOUTS = (httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)


def provider_error(
    failure_class: FailureClass,
    message: str,
    *,
    api_key: str,
    status: int | None = None,
    retry_after_s: float | None = None,
    usage: Usage | None = None,
) -> ProviderError:
    """A ProviderError whose message is masked and of bounded length."""
    text = " ".join(str(message).split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return ProviderError(
        failure_class,
        redact(text, [api_key]),
        status=status,
        retry_after_s=retry_after_s,
        usage=usage,
    )


def transport_failure_class(exc: httpx.HTTPError) -> FailureClass:
    if isinstance(exc, _TIMEOUTS):
        return FailureClass.TIMEOUT
    if isinstance(exc, httpx.DecodingError):
        return FailureClass.BAD_RESPONSE
    return FailureClass.CONNECTION_ERROR


_KINDS: dict[type[httpx.HTTPError], str] = {
    httpx.ConnectTimeout: "connect timeout",
    httpx.ReadTimeout: "read timeout: no data from the upstream in time",
    httpx.WriteTimeout: "write timeout",
    httpx.PoolTimeout: "no free connection in the pool in time",
    httpx.ConnectError: "cannot connect",
    httpx.ReadError: "connection broken while reading (reset?)",
    httpx.WriteError: "connection broken while sending",
    httpx.RemoteProtocolError: "the upstream broke the HTTP exchange",
    httpx.DecodingError: "the response body cannot be decoded",
}


def _transport_message(exc: httpx.HTTPError) -> str:
    # A subclass the client raises itself (http_client.ResponseTooLarge) names its own kind.
    kind = _KINDS.get(type(exc)) or getattr(exc, "kind", None) or type(exc).__name__
    detail = str(exc)
    return f"{kind}: {detail}" if detail else kind


def from_transport(exc: httpx.HTTPError, *, api_key: str, usage: Usage | None = None) -> ProviderError:
    """A ProviderError for an httpx exception (never includes the request's headers)."""
    return provider_error(transport_failure_class(exc), _transport_message(exc), api_key=api_key, usage=usage)


def class_for_status(status: int) -> FailureClass:
    """The default failure class of a non-2xx status."""
    if status in (401, 403):
        return FailureClass.AUTH_ERROR
    if status == 402:
        return FailureClass.QUOTA_EXHAUSTED
    if status == 408:
        return FailureClass.TIMEOUT
    if status in (429, 529):
        return FailureClass.RATE_LIMITED
    if status == 409 or 500 <= status <= 599:
        return FailureClass.SERVER_ERROR
    if 400 <= status <= 499:
        return FailureClass.INVALID_REQUEST
    return FailureClass.BAD_RESPONSE


def redirect_error(response: httpx.Response, *, api_key: str) -> ProviderError:
    location = response.headers.get("location", "")[:200] or "nowhere"
    return provider_error(
        FailureClass.BAD_RESPONSE,
        f"the upstream answered with a redirect to {location}; RANA never follows redirects, "
        "so check the provider's base URL",
        api_key=api_key,
        status=response.status_code,
    )


def check_api_key(api_key: str) -> None:
    """A key that cannot go into an HTTP header is a bad stored key (never echoed back)."""
    if api_key and not all(0x21 <= ord(ch) <= 0x7E for ch in api_key):
        raise ProviderError(
            FailureClass.AUTH_ERROR,
            "the stored API key contains whitespace or non-ASCII characters and cannot be sent",
        )
