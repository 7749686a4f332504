"""How long an upstream asked us to wait, from its headers or (Gemini) its error body.

Sources, first valid one wins (an invalid one is skipped, not fatal):
1. `retry-after-ms`: milliseconds (OpenAI and Anthropic send it beside Retry-After).
2. `Retry-After`: delta-seconds ("2", also "1.5" from lenient servers) or an HTTP-date,
   measured from `now` (injectable). A date already past means "now": 0.0.
3. Gemini's error body: `error.details[]` with `@type`
   `type.googleapis.com/google.rpc.RetryInfo` and `retryDelay` such as "13s" or "0.5s".

Negative numbers, NaN/infinity and garbage give None ("no advice": the engine backs off).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
_NUMBER = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def parse_retry_after(
    headers: Mapping[str, str] | None,
    body: Any = None,
    *,
    now: datetime | None = None,
) -> float | None:
    """Seconds to wait before retrying, or None if the upstream gave no usable advice.

    `headers` must look up case-insensitively (httpx.Headers) or have lower-case keys.
    `body` is the parsed JSON error body, if any.
    """
    if headers is not None:
        seconds = _milliseconds(headers.get("retry-after-ms"))
        if seconds is None:
            seconds = retry_after_header(headers.get("retry-after"), now=now)
        if seconds is not None:
            return seconds
    return gemini_retry_delay(body)


def _milliseconds(value: str | None) -> float | None:
    if value is None or not _NUMBER.match(value):
        return None
    return _finite(float(value) / 1000.0)


def retry_after_header(value: str | None, *, now: datetime | None = None) -> float | None:
    """The value of one Retry-After header: delta-seconds or an HTTP-date."""
    if value is None:
        return None
    if _NUMBER.match(value):
        return _finite(float(value))
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def gemini_retry_delay(body: Any) -> float | None:
    """`retryDelay` of the RetryInfo detail in a Google API error body."""
    if isinstance(body, list) and body:  # streaming endpoints may wrap the error in a list
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    if not isinstance(details, list):
        return None
    for detail in details:
        if isinstance(detail, dict) and detail.get("@type") == RETRY_INFO_TYPE:
            delay = detail.get("retryDelay")
            match = _DURATION.match(delay) if isinstance(delay, str) else None
            if match:
                return _finite(float(match.group(1)))
    return None


def _finite(seconds: float) -> float | None:
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
