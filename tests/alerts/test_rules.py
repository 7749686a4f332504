"""Rule evaluation on seeded ledger rows, forced circuits and budget spend: exact thresholds,
minimum requests, one event per condition and window, resolution and firing again."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from alerts.models import AlertDelivery, AlertEvent, AlertRule, RuleKind
from alerts.services import alerts_evaluate, window_start
from providers.services import circuit_force
from tests.alerts.conftest import seed_calls, seed_completion

pytestmark = pytest.mark.django_db


def _rule(**fields) -> AlertRule:
    defaults = {"name": fields.get("kind", "rule"), "window_s": 300, "min_requests": 10}
    return AlertRule.objects.create(**{**defaults, **fields})


def _seed_fallbacks(chain, *, requests: int, fallbacks: int, at=None) -> None:
    for index in range(requests):
        seed_completion(chain, fallback=index < fallbacks, at=at)


def test_fallback_rate_fires_at_exactly_the_threshold_and_not_below(ready_chain):
    rule = _rule(kind=RuleKind.FALLBACK_RATE, chain=ready_chain, threshold_pct=25)
    _seed_fallbacks(ready_chain, requests=20, fallbacks=4)  # 20 %
    assert alerts_evaluate() == []
    seed_completion(ready_chain, fallback=True)  # 5 of 21: 23.8 %
    assert alerts_evaluate() == []
    _seed_fallbacks(ready_chain, requests=3, fallbacks=3)  # 8 of 24: 33 %
    [event] = alerts_evaluate()
    assert event.rule == rule and event.condition == f"fallback:{ready_chain.pk}"
    assert event.details["requests"] == 24 and event.details["fallbacks"] == 8


def test_fallback_rate_at_exactly_the_threshold_fires(ready_chain):
    _rule(kind=RuleKind.FALLBACK_RATE, chain=ready_chain, threshold_pct=25)
    _seed_fallbacks(ready_chain, requests=20, fallbacks=5)  # exactly 25 %
    [event] = alerts_evaluate()
    assert "25.0 % of 20 requests" in event.summary


def test_no_verdict_under_the_minimum_of_requests_and_old_rows_do_not_count(ready_chain):
    _rule(kind=RuleKind.FALLBACK_RATE, chain=ready_chain, threshold_pct=10, min_requests=10)
    _seed_fallbacks(ready_chain, requests=9, fallbacks=9)
    _seed_fallbacks(ready_chain, requests=5, fallbacks=5, at=timezone.now() - dt.timedelta(seconds=400))
    assert alerts_evaluate() == []
    seed_completion(ready_chain, fallback=True)
    assert len(alerts_evaluate()) == 1


def test_budget_blocked_and_cached_requests_do_not_count_as_requests(ready_chain):
    _rule(kind=RuleKind.FALLBACK_RATE, chain=ready_chain, threshold_pct=50, min_requests=4)
    _seed_fallbacks(ready_chain, requests=3, fallbacks=3)
    seed_completion(ready_chain, outcome="budget_blocked")
    seed_completion(ready_chain, outcome="cache_hit")
    assert alerts_evaluate() == []


def test_error_rate_of_a_provider_with_its_minimum_of_calls(ready_chain, simulated_provider):
    _rule(kind=RuleKind.ERROR_RATE, provider=simulated_provider, threshold_pct=50, min_requests=10)
    seed_calls(ready_chain, simulated_provider, ok=5, failed=4)  # 9 calls: under the minimum
    assert alerts_evaluate() == []
    seed_calls(ready_chain, simulated_provider, ok=0, failed=1)  # 5 of 10: exactly 50 %
    [event] = alerts_evaluate()
    assert event.condition == f"errors:{simulated_provider.pk}"
    assert event.details["calls"] == 10 and event.details["errors"] == 5


def test_caller_errors_and_skips_are_not_provider_errors(ready_chain, simulated_provider):
    _rule(kind=RuleKind.ERROR_RATE, threshold_pct=10, min_requests=5)
    seed_calls(ready_chain, simulated_provider, ok=5, failed=5, outcome="invalid_request")
    seed_calls(ready_chain, simulated_provider, ok=0, failed=5, outcome="circuit_open")
    assert alerts_evaluate() == []


def test_an_open_circuit_fires_once_while_open_and_resolves_when_closed(ready_chain, simulated_provider):
    rule = _rule(kind=RuleKind.BREAKER_OPEN, window_s=60)
    now = window_start(timezone.now(), 60) + dt.timedelta(seconds=1)
    assert alerts_evaluate(now=now) == []
    circuit_force(provider_id=simulated_provider.pk, model="sim-small", action="open")
    [event] = alerts_evaluate(now=now)
    assert event.condition == f"circuit:{simulated_provider.pk}:sim-small" and "is open" in event.summary
    assert alerts_evaluate(now=now + dt.timedelta(seconds=5)) == []  # the same window
    assert alerts_evaluate(now=now + dt.timedelta(seconds=120)) == []  # still the open event
    circuit_force(provider_id=simulated_provider.pk, model="sim-small", action="close")
    assert alerts_evaluate(now=now + dt.timedelta(seconds=121)) == []
    assert rule.events.get().resolved_at is not None


def test_a_condition_that_resolved_fires_again_in_a_later_window_but_not_in_the_same(
    ready_chain, simulated_provider
):
    _rule(kind=RuleKind.BREAKER_OPEN, window_s=60)
    start = window_start(timezone.now(), 60)
    circuit_force(provider_id=simulated_provider.pk, model="sim-small", action="open")
    assert len(alerts_evaluate(now=start + dt.timedelta(seconds=1))) == 1
    circuit_force(provider_id=simulated_provider.pk, model="sim-small", action="close")
    alerts_evaluate(now=start + dt.timedelta(seconds=2))
    circuit_force(provider_id=simulated_provider.pk, model="sim-small", action="open")
    assert alerts_evaluate(now=start + dt.timedelta(seconds=3)) == []  # flapping within one window
    assert len(alerts_evaluate(now=start + dt.timedelta(seconds=61))) == 1
    assert AlertEvent.objects.count() == 2


def test_each_event_gets_one_delivery_per_channel(
    ready_chain, simulated_provider, django_capture_on_commit_callbacks
):
    _rule(
        kind=RuleKind.BREAKER_OPEN, webhook_urls="http://127.0.0.1:9/a\nhttp://127.0.0.1:9/a\n",
        emails="ops@example.com", enabled=True,
    )  # fmt: skip
    _rule(name="off", kind=RuleKind.BREAKER_OPEN, enabled=False)
    circuit_force(provider_id=simulated_provider.pk, model="sim-small", action="open")
    with django_capture_on_commit_callbacks() as queued:
        [event] = alerts_evaluate()
    assert sorted(AlertDelivery.objects.values_list("channel", "target")) == [
        ("email", "ops@example.com"),
        ("webhook", "http://127.0.0.1:9/a"),
    ]
    assert len(queued) == 1 and event.rule.name == "breaker_open"
