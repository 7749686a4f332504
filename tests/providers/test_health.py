"""Health per provider and model: the score and its reasons from recorded attempts, exactly."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.utils import timezone

from providers.models import Attempt, Provider
from providers.services import health as health_module
from providers.services import health_recent, provider_health
from providers.services.health import health_forget, health_score, percentile

pytestmark = pytest.mark.django_db

KEY = "sk-proj-abcdefghijklmnopqrstuvwx"


@pytest.fixture(autouse=True)
def _no_cached_health():
    health_forget()
    yield
    health_forget()


@pytest.fixture
def now() -> dt.datetime:
    return timezone.now()


def attempt(provider: Provider, at: dt.datetime, outcome: str = "success", **fields) -> Attempt:
    values = {
        "completion_id": uuid.uuid4(),
        "started_at": at,
        "source": "api",
        "step_position": 0,
        "provider": provider,
        "provider_name": provider.name,
        "provider_kind": provider.kind,
        "model": "m",
        "outcome": outcome,
        "latency_ms": 1000.0,
    }
    return Attempt.objects.create(**(values | fields))


@pytest.fixture
def seeded(now) -> dict[str, Provider]:
    """slow: 22 successes (p95 latency 2.4 s) and 3 server errors in the window, plus rows that
    are not counted; streamy: 10 successful streams, one with a 3 s first token."""
    slow = Provider.objects.create(name="slow", kind="simulated")
    streamy = Provider.objects.create(name="streamy", kind="simulated")
    for i in range(20):
        attempt(slow, now - dt.timedelta(minutes=10, seconds=i))
    attempt(slow, now - dt.timedelta(minutes=9), latency_ms=2400.0)
    attempt(slow, now - dt.timedelta(minutes=8), latency_ms=3000.0)
    attempt(slow, now - dt.timedelta(minutes=7), "server_error", http_status=503)
    attempt(slow, now - dt.timedelta(minutes=6), "timeout", latency_ms=30000.0)
    attempt(slow, now - dt.timedelta(minutes=5), "server_error", error_message=f"upstream said bad key {KEY}")
    # Not calls, or not the provider's doing, or outside the window: none of these count.
    for outcome in ("circuit_open", "capability_skipped", "cancelled", "invalid_request", "context_length"):
        attempt(slow, now - dt.timedelta(minutes=2), outcome)
    attempt(slow, now - dt.timedelta(minutes=1), "server_error", injected=True)
    attempt(slow, now - dt.timedelta(minutes=20), "server_error")
    for i in range(9):
        attempt(streamy, now - dt.timedelta(minutes=3, seconds=i), ttft_ms=800.0, latency_ms=1500.0)
    attempt(streamy, now - dt.timedelta(minutes=4), ttft_ms=3000.0, latency_ms=1500.0)
    return {"slow": slow, "streamy": streamy}


def test_score_and_reasons_come_from_the_real_calls_of_the_window(seeded, now):
    slow, streamy = provider_health(now=now)
    assert (slow.provider_name, slow.model, slow.calls) == ("slow", "m", 25)
    assert slow.success_rate == 22 / 25
    assert (slow.p50_latency_ms, slow.p95_latency_ms, slow.p95_ttft_ms) == (1000.0, 2400.0, None)
    # 100 - 12 (error rate) - 4 (p95 0.4 s over 2 s, 10 points a second)
    assert slow.score == 84
    assert slow.reasons == ("error rate 12 % over 15 min", "p95 latency 2.4 s")
    assert slow.last_success_at == now - dt.timedelta(minutes=8)
    assert slow.last_error_at == now - dt.timedelta(minutes=5)
    assert slow.last_error == "server_error: upstream said bad key ••••uvwx"
    # 100 - 20: p95 first token 3 s is 2 s over 1 s, 10 points a second, at most 20
    assert (streamy.calls, streamy.success_rate, streamy.p95_ttft_ms) == (10, 1.0, 3000.0)
    assert (streamy.score, streamy.reasons) == (
        80,
        ("error rate 0 % over 15 min", "p95 time to first token 3.0 s"),
    )
    assert (streamy.last_error_at, streamy.last_error) == (None, "")


def test_a_provider_with_no_call_in_the_window_has_no_figures(seeded, now):
    later = now + dt.timedelta(minutes=16)
    assert provider_health(now=later) == []


def test_figures_take_three_queries_and_percentiles_read_a_bounded_sample(
    seeded, now, monkeypatch, django_assert_num_queries
):
    monkeypatch.setattr(health_module, "SAMPLES_PER_MODEL", 2)
    with django_assert_num_queries(3):
        slow, _streamy = provider_health(now=now)
    assert slow.calls == 25  # counts are over the whole window
    assert (slow.p50_latency_ms, slow.p95_latency_ms) == (2400.0, 3000.0)  # the latest 2 successes


def test_the_process_keeps_its_figures_for_a_few_seconds(seeded, now, monkeypatch):
    before = health_recent()[seeded["slow"].pk, "m"]
    attempt(seeded["slow"], now, "server_error")
    assert health_recent()[seeded["slow"].pk, "m"] == before
    monkeypatch.setattr(health_module, "CACHE_S", 0.0)
    assert health_recent()[seeded["slow"].pk, "m"].calls == before.calls + 1


@pytest.mark.parametrize(
    ("figures", "expected"),
    [
        ({"calls": 40, "errors": 0, "p95_latency_ms": 1900.0, "p95_ttft_ms": 900.0}, 100),
        ({"calls": 8, "errors": 1, "p95_latency_ms": None, "p95_ttft_ms": None}, 88),  # 87.5 rounds up
        (
            {"calls": 10, "errors": 0, "p95_latency_ms": 9000.0, "p95_ttft_ms": None},
            70,
        ),  # latency: at most 30
        ({"calls": 4, "errors": 4, "p95_latency_ms": None, "p95_ttft_ms": 5000.0}, 0),  # never below 0
    ],
)
def test_score_rule(figures, expected):
    assert health_score(window_s=900, **figures)[0] == expected


def test_percentiles_are_nearest_rank():
    assert percentile([], 0.95) is None
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert percentile([float(n) for n in range(1, 21)], 0.95) == 19.0
