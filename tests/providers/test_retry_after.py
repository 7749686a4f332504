"""Retry-After advice: retry-after-ms, Retry-After (seconds or HTTP-date), Gemini RetryInfo."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from providers.adapters.retry_after import RETRY_INFO_TYPE, parse_retry_after

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def gemini_body(delay: object) -> dict:
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
        {"@type": RETRY_INFO_TYPE, "retryDelay": delay},
    ]
    return {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": details}}


def test_retry_after_ms_wins_over_retry_after() -> None:
    headers = httpx.Headers({"Retry-After": "7", "retry-after-ms": "1500"})
    assert parse_retry_after(headers) == 1.5


@pytest.mark.parametrize(("value", "seconds"), [("2", 2.0), ("0", 0.0), ("1.5", 1.5), (" 30 ", 30.0)])
def test_retry_after_delta_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(httpx.Headers({"Retry-After": value})) == seconds


def test_retry_after_http_date_is_measured_from_now() -> None:
    headers = httpx.Headers({"Retry-After": "Sun, 01 Mar 2026 12:00:45 GMT"})
    assert parse_retry_after(headers, now=NOW) == 45.0


def test_retry_after_http_date_in_the_past_means_now() -> None:
    headers = httpx.Headers({"Retry-After": "Sun, 01 Mar 2026 11:59:00 GMT"})
    assert parse_retry_after(headers, now=NOW) == 0.0


@pytest.mark.parametrize("value", ["-3", "soon", "", "NaN", "inf", "1e3", "Sun, 99 Foo 2026"])
def test_negative_or_garbage_retry_after_gives_none(value: str) -> None:
    assert parse_retry_after(httpx.Headers({"Retry-After": value}), now=NOW) is None


def test_garbage_retry_after_ms_falls_through_to_retry_after() -> None:
    headers = httpx.Headers({"retry-after-ms": "-20", "Retry-After": "3"})
    assert parse_retry_after(headers) == 3.0


@pytest.mark.parametrize(("delay", "seconds"), [("13s", 13.0), ("0.5s", 0.5), ("1.234s", 1.234)])
def test_gemini_retry_info_in_the_error_body(delay: str, seconds: float) -> None:
    assert parse_retry_after(httpx.Headers(), gemini_body(delay)) == seconds


def test_gemini_retry_info_in_a_list_wrapped_body() -> None:
    assert parse_retry_after(None, [gemini_body("4s")]) == 4.0


@pytest.mark.parametrize("delay", ["-1s", "13", "13ms", "soon", 13, None])
def test_gemini_garbage_retry_delay_gives_none(delay: object) -> None:
    assert parse_retry_after(httpx.Headers(), gemini_body(delay)) is None


def test_headers_win_over_gemini_body() -> None:
    assert parse_retry_after(httpx.Headers({"Retry-After": "2"}), gemini_body("13s")) == 2.0


def test_no_advice_gives_none() -> None:
    assert parse_retry_after(httpx.Headers(), {"error": {"message": "x"}}) is None
    assert parse_retry_after(None, None) is None
