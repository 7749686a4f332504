"""Cost charts (JSON, CSV and table through charts.base.LedgerChartView)."""

from __future__ import annotations

from dashboards.charts.base import ChartData, LedgerChartView
from dashboards.charts.log_links import chain_points, named, time_points
from dashboards.outcomes import OUTCOME_COLORS, outcome_label
from dashboards.selectors.cost import (
    OTHER,
    failure_cost,
    fallback_premium,
    spend_by,
    spend_series,
    tokens_series,
)
from dashboards.selectors.filters import Filters


class _SpendSeriesChart(LedgerChartView):
    by = "provider_name"
    param = "provider"  # the request log's filter for one series

    def build(self, f: Filters) -> ChartData:
        data = spend_series(f, self.by)
        return ChartData(
            labels=data["labels"],
            keys=data["keys"],
            label_title=f"slot start ({f.tz.key})",
            series_names=data["names"],
            data=[data["values"][name] for name in data["names"]],
            unit="usd",
            stacked=True,
            log_points=time_points(data["keys"], f),
            log_series=named(self.param, data["names"], skip=(OTHER,)),
        )


class SpendByProviderChart(_SpendSeriesChart):
    name, title, by = "spend-by-provider", "Spend by provider", "provider_name"


class SpendByModelChart(_SpendSeriesChart):
    name, title, by, param = "spend-by-model", "Spend by model", "model", "model"


class TokensChart(LedgerChartView):
    name, title = "tokens", "Tokens in, out and cached"

    def build(self, f: Filters) -> ChartData:
        data = tokens_series(f)
        return ChartData(
            kind="line" if len(data["labels"]) > 48 else "bar",
            labels=data["labels"],
            keys=data["keys"],
            label_title=f"slot start ({f.tz.key})",
            series_names=["Input", "Output", "Cached input"],
            data=[data["input_tokens"], data["output_tokens"], data["cached_tokens"]],
            unit="tokens",
            colors=["#2457c5", "#e0822c", "#2a9d8f"],
            note="Cached input is part of input.",
            log_points=time_points(data["keys"], f),
        )


class FailureCostChart(LedgerChartView):
    name, title = "failure-cost", "Time spent on failed attempts"

    def build(self, f: Filters) -> ChartData:
        data = failure_cost(f)
        classes = sorted({c for row in data["rows"] for c in row["by_class"]})
        longest = max((row["time_s"] for row in data["rows"]), default=0.0)
        unit, per = ("h", 3600) if longest >= 7200 else ("min", 60) if longest >= 300 else ("s", 1)
        return ChartData(
            labels=data["providers"],
            label_title="provider",
            series_names=[outcome_label(c) for c in classes],
            data=[[round(row["by_class"].get(c, 0.0) / per, 3) for row in data["rows"]] for c in classes],
            unit=unit,
            stacked=True,
            horizontal=True,
            colors=[OUTCOME_COLORS.get(c, "#999999") for c in classes],
            note="Upstream time spent per failure class.",
            log_points=named("provider", data["providers"]),
        )


class FallbackPremiumChart(LedgerChartView):
    name, title = "fallback-premium", "Answers from fallback steps: cost vs first step"

    def build(self, f: Filters) -> ChartData:
        rows = fallback_premium(f)
        return ChartData(
            labels=[r["name"] for r in rows],
            label_title="chain",
            series_names=["Actual cost", "Same tokens at the first step's price"],
            data=[[r["cost_usd"] for r in rows], [r["first_step_cost_usd"] for r in rows]],
            unit="usd",
            colors=["#e0822c", "#2457c5"],
            note="Blank bar: the first step has no price.",
            log_points=[p | {"fallback": "yes"} for p in chain_points([r["chain_id"] for r in rows])],
        )


class _SpendByChart(LedgerChartView):
    dimension = "source"
    param = "source"  # the request log's filter for one bar
    empty_label = "(none)"

    def build(self, f: Filters) -> ChartData:
        rows = spend_by(f, self.dimension)
        return ChartData(
            labels=[r["name"] or self.empty_label for r in rows],
            label_title=self.dimension,
            series_names=["Spend"],
            data=[[r["cost_usd"] for r in rows]],
            unit="usd",
            horizontal=True,
            log_points=named(self.param, [r["name"] for r in rows]),
        )


class SpendBySourceChart(_SpendByChart):
    name, title, dimension = "spend-by-source", "Spend by source", "source"


class SpendByKeyChart(_SpendByChart):
    name, title, dimension, param, empty_label = (
        "spend-by-key",
        "Spend by gateway key",
        "gateway_key_prefix",
        "key",
        "(no key)",
    )
