"""Cost figures on known ledgers, to the cent (and beyond): spend, tokens, sources, keys,
the cost of failures and fallbacks, and budget burn with its month-end projection."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from dashboards.selectors.budget import budget_burn
from dashboards.selectors.cost import cost_summary, failure_cost, fallback_premium, spend_by, spend_series
from providers.models import FallbackChain, ModelPrice
from tests.dashboards.conftest import T0, attempt, filters, request_rows

HOUR = dt.timedelta(hours=1)
D = Decimal


@pytest.fixture
def known(record, chain, two_providers):
    p2 = {"provider": "p2", "model": "m2", "step": 1}

    def req(hours: int, attempts: list[dict], **kwargs):
        at = T0 + hours * HOUR
        record(request_rows(at=at, attempts=attempts, chain=chain, providers=two_providers, **kwargs))

    usage = {"input_tokens": 1000, "output_tokens": 100, "cached_tokens": 200}
    req(0, [attempt(cost_usd=D("0.0123456789"), **usage)], key="rk_a")
    answer = attempt(**p2, cost_usd=D("0.2"), input_tokens=2000, output_tokens=500)
    req(1, [attempt(outcome="rate_limited", latency_ms=250), answer], source="batch")
    cut = attempt(**p2, outcome="stream_interrupted", latency_ms=1500, cost_usd=D("0.004"), input_tokens=300)
    req(2, [cut | {"output_tokens": 20}], key="rk_b", outcome="stream_interrupted")
    req(3, [attempt(unpriced=True, input_tokens=10, output_tokens=10)], source="playground")
    return filters(T0, T0 + 4 * HOUR)


def test_spend_and_tokens_add_up_exactly(known):
    summary = cost_summary(known)
    assert summary["cost_usd"] == D("0.2163456789")
    assert summary["cost_usd"].quantize(D("0.01")) == D("0.22")
    assert (summary["input_tokens"], summary["output_tokens"], summary["cached_tokens"]) == (3310, 630, 200)
    assert (summary["requests"], summary["attempts"], summary["unpriced"]) == (4, 5, 1)
    assert summary["failed_cost_usd"] == D("0.004")  # the interrupted stream's billed tokens
    assert summary["failed_time_s"] == pytest.approx(1.75)  # 250 ms + 1,500 ms
    assert summary["cost_per_1k_requests"] == D("54.086419725")


def test_spend_per_slot_by_provider(known):
    data = spend_series(filters(T0, T0 + 7 * HOUR), "provider_name")  # over 6 hours: hourly slots
    assert data["labels"] == ["12:00", "13:00", "14:00", "15:00", "16:00", "17:00", "18:00"]
    assert data["names"] == ["p2", "p1"]  # by spend
    assert data["values"]["p1"][:4] == [D("0.0123456789"), 0, 0, 0]
    assert data["values"]["p2"][:4] == [0, D("0.2"), D("0.004"), 0]


def test_spend_by_source_and_by_gateway_key(known):
    by_source = {r["name"]: (r["cost_usd"], r["count"], r["unpriced"]) for r in spend_by(known, "source")}
    assert by_source == {
        "batch": (D("0.2"), 2, 0),
        "api": (D("0.0163456789"), 2, 0),
        "playground": (D(0), 1, 1),
    }
    by_key = [(r["name"], r["cost_usd"], r["count"]) for r in spend_by(known, "gateway_key_prefix")]
    assert by_key == [("", D("0.2"), 2), ("rk_a", D("0.0123456789"), 1), ("rk_b", D("0.004"), 1)]


def test_failure_cost_in_money_and_time(known):
    data = failure_cost(known)
    assert data["providers"] == ["p2", "p1"]
    p2, p1 = data["rows"]
    assert (p2["attempts"], p2["cost_usd"], p2["by_class"]) == (1, D("0.004"), {"stream_interrupted": 1.5})
    assert (p1["attempts"], p1["cost_usd"], p1["time_s"]) == (1, D(0), 0.25)


def test_fallback_premium_prices_fallback_answers_at_the_first_step(known):
    ModelPrice.objects.create(
        provider_kind="simulated", model="m1", input_per_mtok=D("1"), output_per_mtok=D("2"),
        effective_from=dt.date(2025, 1, 1),
    )  # fmt: skip
    (row,) = fallback_premium(known)
    assert (row["name"], row["first_step"], row["answers"]) == ("Main", "p1 / m1", 1)
    assert row["cost_usd"] == D("0.2")
    assert row["first_step_cost_usd"] == D("0.003")  # 2,000 in x $1/M + 500 out x $2/M
    assert row["extra_usd"] == D("0.197")


def test_fallback_premium_is_blank_when_the_first_step_has_no_price(known):
    (row,) = fallback_premium(known)
    assert row["first_step_cost_usd"] is None and row["extra_usd"] is None


@pytest.fixture
def budgeted(record, chain, two_providers, settings):
    settings.RANA_GLOBAL_MONTHLY_BUDGET_USD = "50"
    chain.daily_budget_usd, chain.monthly_budget_usd = D("5"), D("100")
    chain.save()

    def spend(at: dt.datetime, cost: str, **kwargs):
        record(request_rows(at=at, attempts=[attempt(cost_usd=D(cost), **kwargs)], chain=chain))

    spend(dt.datetime(2025, 2, 28, 23, tzinfo=dt.UTC), "99")  # last month: not counted
    spend(dt.datetime(2025, 3, 3, 9, tzinfo=dt.UTC), "2.5")
    spend(dt.datetime(2025, 3, 10, 20, tzinfo=dt.UTC), "7.5", unpriced=True)
    spend(dt.datetime(2025, 3, 11, 1, tzinfo=dt.UTC), "1.25", injected=True)  # budgets count everything
    return chain


def test_budget_burn_today_this_month_and_projection(budgeted):
    now = dt.datetime(2025, 3, 11, 6, tzinfo=dt.UTC)  # 246 of the month's 744 hours
    burn = budget_burn(now=now)
    (line,) = burn["chains"]
    assert (line["spent_day"], line["daily_budget"], line["day_share"]) == (D("1.25"), D("5"), 25.0)
    assert (line["spent_month"], line["monthly_budget"], line["month_share"]) == (D("11.25"), D("100"), 11.25)
    assert line["projected_month"].quantize(D("0.01")) == D("34.02")  # 11.25 x 744 / 246
    assert line["projected_share"] == 34.02
    assert line["unpriced"] == 1
    total = burn["global"]
    assert (total["spent_month"], total["monthly_budget"]) == (D("11.25"), D("50"))
    assert total["month_share"] == 22.5
    assert (total["daily_budget"], total["projected_share"]) == (None, 68.05)
    assert burn["month_elapsed"] == 33.06


def test_budget_burn_follows_the_chain_filter(budgeted):
    other = FallbackChain.objects.create(name="Other", slug="other", monthly_budget_usd=D("10"))
    burn = budget_burn(now=dt.datetime(2025, 3, 11, 6, tzinfo=dt.UTC), chain_id=other.id)
    assert burn["global"] is None
    (line,) = burn["chains"]
    assert (line["name"], line["spent_month"], line["projected_month"]) == ("Other", D(0), D(0))
