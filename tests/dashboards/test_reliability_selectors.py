"""Reliability figures on known ledgers, checked exactly: rates, percentiles, funnel, status."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from dashboards.selectors.percentiles import latency_percentiles
from dashboards.selectors.reliability import (
    attempts_by_provider,
    failure_rates_by_provider,
    fallback_funnel,
    rates_series,
    reliability_summary,
)
from dashboards.selectors.status import provider_status
from tests.dashboards.conftest import T0, attempt, filters, request_rows

MIN = dt.timedelta(minutes=1)


@pytest.fixture
def known(record, chain, two_providers):
    """Six requests between T0 and T0 + 6 min on chain main (p1/m1 then p2/m2)."""
    p2 = {"provider": "p2", "model": "m2", "step": 1}

    def req(minute: int, attempts: list[dict], **kwargs):
        at = T0 + minute * MIN
        record(request_rows(at=at, attempts=attempts, chain=chain, providers=two_providers, **kwargs))

    req(1, [attempt(latency_ms=100, ttft_ms=40)])
    req(2, [attempt(outcome="rate_limited", latency_ms=50), attempt(**p2, latency_ms=300, ttft_ms=90)])
    server_error = attempt(outcome="server_error", latency_ms=200)
    req(3, [server_error, server_error | {"retry": 1}, attempt(**p2, outcome="timeout", latency_ms=1000)])
    req(4, [attempt(outcome="circuit_open", latency_ms=0), attempt(**p2, latency_ms=400)])
    req(5, [attempt(outcome="server_error", latency_ms=10, injected=True), attempt(**p2, latency_ms=500)],
        source="playground")  # fmt: skip
    req(6, [], outcome="cache_hit")
    return filters(T0, T0 + 10 * MIN)


def test_rates_leave_injected_faults_out_by_default(known):
    assert reliability_summary(known) == {
        "requests": 5,  # the playground request had an injected fault
        "answered": 4,  # three answers and a cache hit
        "success_rate": 80.0,
        "fallbacks": 2,
        "fallback_rate": 40.0,
        "attempts": 9,
        "errors": 4,  # 429, 2 x 5xx, timeout; the open circuit is a skip, not an error
        "error_rate": 50.0,  # 4 of the 8 attempts that reached a provider
    }


def test_the_toggle_counts_injected_faults(known):
    summary = reliability_summary(replace(known, include_injected=True))
    assert (summary["requests"], summary["success_rate"], summary["fallback_rate"]) == (6, 83.33, 50.0)
    assert (summary["attempts"], summary["errors"], summary["error_rate"]) == (10, 5, 55.56)


def test_rates_per_minute_slot(known):
    series = rates_series(known)
    assert series["labels"][:7] == ["12:00", "12:01", "12:02", "12:03", "12:04", "12:05", "12:06"]
    assert series["success_rate"][:7] == [None, 100.0, 100.0, 0.0, 100.0, None, 100.0]
    assert series["fallback_rate"][:7] == [None, 0.0, 100.0, 0.0, 100.0, None, 0.0]
    assert series["error_rate"][:7] == [None, 0.0, 50.0, 100.0, 0.0, 0.0, None]
    assert series["attempts"][:7] == [0, 1, 2, 3, 2, 1, 0]


def test_attempts_and_failure_rates_by_provider(known):
    data = attempts_by_provider(known)
    assert data["providers"] == ["p1", "p2"]
    assert data["outcomes"] == ["success", "rate_limited", "server_error", "timeout", "circuit_open"]
    assert data["counts"]["success"] == [1, 3]
    assert data["counts"]["server_error"] == [2, 0]
    rates = failure_rates_by_provider(known)
    assert rates["classes"] == ["rate_limited", "server_error", "timeout"]
    assert rates["rates"]["server_error"] == [50.0, 0.0]  # p1: 2 of 4 counted attempts
    assert rates["rates"]["timeout"] == [0.0, 25.0]  # p2: 1 of 4


def test_fallback_funnel_shares_per_chain(known):
    (chain,) = fallback_funnel(known)["chains"]
    assert chain["name"] == "Main" and chain["requests"] == 5
    assert [(s["position"], s["label"], s["answered"], s["share"]) for s in chain["steps"]] == [
        (0, "p1 / m1", 1, 20.0),
        (1, "p2 / m2", 2, 40.0),
    ]
    assert (chain["cache_hits"], chain["cache_share"], chain["unanswered"], chain["unanswered_share"]) == (
        1, 20.0, 1, 20.0,
    )  # fmt: skip


def test_exact_percentiles_use_the_nearest_rank(record, db):
    latencies = [10.0 * i for i in range(1, 21)]  # 10, 20, ..., 200 ms
    record(*[request_rows(at=T0, attempts=[attempt(latency_ms=v, ttft_ms=v / 10)]) for v in latencies])
    result = latency_percentiles(filters(T0, T0 + MIN))
    assert result["method"] == "exact"
    (row,) = result["rows"]
    assert (row["answers"], row["latency_p50"], row["latency_p95"]) == (20, 100.0, 190.0)
    assert (row["streamed"], row["ttft_p50"], row["ttft_p95"]) == (20, 10.0, 19.0)


def test_histogram_percentiles_fall_in_the_exact_values_bin(record, db, settings):
    settings.RANA_DASHBOARDS_EXACT_PERCENTILE_ROWS = 0
    record(*[request_rows(at=T0, attempts=[attempt(latency_ms=10.0 * i)]) for i in range(1, 21)])
    result = latency_percentiles(filters(T0, T0 + MIN))
    assert result["method"] == "histogram"
    (row,) = result["rows"]
    # p50: rank 10 lies in [100, 125) after 9 smaller values, 3 in the bin: 100 + 25 x 1/3.
    # p95: rank 19 lies in [160, 200) after 15, 4 in the bin: its top edge. Exact: 100 and 190.
    assert (row["latency_p50"], row["latency_p95"]) == (108.3, 200.0)
    assert row["ttft_p50"] is None


def test_day_slots_follow_the_viewers_midnight_across_a_dst_change(record, db):
    early, late = dt.datetime(2025, 3, 10, 3, tzinfo=dt.UTC), dt.datetime(2025, 3, 10, 6, tzinfo=dt.UTC)
    record(request_rows(at=early, attempts=[attempt()]), request_rows(at=late, attempts=[attempt()]))
    start, end = dt.datetime(2025, 3, 1, 5, tzinfo=dt.UTC), dt.datetime(2025, 3, 11, 4, tzinfo=dt.UTC)
    new_york = rates_series(filters(start, end, "America/New_York"))  # DST began 9 March, 02:00
    assert new_york["labels"][-3:] == ["Sat 08 Mar", "Sun 09 Mar", "Mon 10 Mar"]
    assert new_york["attempts"][-3:] == [0, 1, 1]  # 23:00 on the 9th and 02:00 on the 10th, local
    assert new_york["keys"][-2:] == ["2025-03-09T00:00:00-05:00", "2025-03-10T00:00:00-04:00"]
    utc = rates_series(filters(start, end, "UTC"))
    assert utc["labels"][-2:] == ["Mon 10 Mar", "Tue 11 Mar"] and utc["attempts"][-2:] == [2, 0]


def test_provider_status_reads_the_last_15_minutes(record, two_providers):
    bad_gateway = attempt(outcome="server_error", http_status=502, error_message="502 ••••")
    record(
        request_rows(at=T0 - 20 * MIN, attempts=[attempt(outcome="timeout")]),  # too old to count
        request_rows(at=T0 + MIN, attempts=[attempt(latency_ms=80)]),
        request_rows(at=T0 + 3 * MIN, attempts=[bad_gateway]),
        request_rows(at=T0 + 5 * MIN, attempts=[attempt(outcome="rate_limited", injected=True)]),
    )  # fmt: skip
    now = T0 + 10 * MIN
    p1, p2 = provider_status(now=now)
    assert (p1["name"], p1["state"], p1["recent_attempts"], p1["recent_errors"], p1["recent_error_rate"]) == (
        "p1", "failing", 2, 1, 50.0,
    )  # fmt: skip
    assert (p1["last_success_at"], p1["last_error_at"]) == (T0 + MIN, T0 + 3 * MIN)
    assert p1["last_error_class"] == "server_error"
    assert (p1["last_error_status"], p1["last_error_message"], p1["circuits"]) == (502, "502 ••••", [])
    assert (p2["name"], p2["state"], p2["last_success_at"]) == ("p2", "idle", None)
    with_injected = provider_status(now=now, include_injected=True)[0]
    assert (with_injected["recent_error_rate"], with_injected["last_error_class"]) == (66.67, "rate_limited")


def test_provider_status_masks_key_shaped_text_in_error_messages(record, two_providers):
    leaked = attempt(outcome="auth_error", error_message="401 invalid key sk-abcdefghijklmnop1234")
    record(request_rows(at=T0, attempts=[leaked]))
    p1 = provider_status(now=T0 + MIN)[0]
    assert p1["last_error_message"] == "401 invalid key ••••1234"


def test_provider_status_shows_open_circuits_with_their_cooldown(two_providers):
    from providers.engine.results import AttemptRecord
    from providers.services.breaker import get_breaker

    p2 = two_providers["p2"]
    get_breaker().record(
        AttemptRecord(
            step_position=1, provider_id=p2.pk, provider_name="p2", provider_kind="simulated", model="m2",
            retry_index=0, outcome="auth_error", started_at=T0, latency_ms=1.0,
        )
    )  # fmt: skip
    rows = {row["name"]: row for row in provider_status(now=T0)}
    assert rows["p1"]["circuits"] == []
    (circuit,) = rows["p2"]["circuits"]
    assert (circuit["model"], circuit["state"], circuit["last_failure_class"]) == ("m2", "open", "auth_error")
    assert 299 <= circuit["cooldown_remaining_s"] <= 300
