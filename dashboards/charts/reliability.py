"""Reliability charts (JSON, CSV and table through charts.base.LedgerChartView)."""

from __future__ import annotations

from dashboards.charts.base import ChartData, LedgerChartView
from dashboards.charts.log_links import chain_points, named, time_points
from dashboards.outcomes import OUTCOME_COLORS, outcome_label
from dashboards.selectors.filters import Filters
from dashboards.selectors.percentiles import latency_percentiles
from dashboards.selectors.reliability import (
    attempts_by_provider,
    failure_rates_by_provider,
    fallback_funnel,
    rates_series,
)

_GRAIN_TITLE = {"minute": "Minute", "hour": "Hour", "day": "Day"}


class RatesChart(LedgerChartView):
    name, title = "rates", "Success, fallback and error rate"

    def build(self, f: Filters) -> ChartData:
        data = rates_series(f)
        return ChartData(
            labels=data["labels"],
            keys=data["keys"],
            label_title=f"{_GRAIN_TITLE[f.series_grain]} starting ({f.tz.key})",
            series_names=["Success rate (right axis)", "Fallback rate", "Error rate (attempts)"],
            data=[data["success_rate"], data["fallback_rate"], data["error_rate"]],
            kind="line",
            unit="%",
            colors=["#1f8a4c", "#2457c5", "#c0392b"],
            right_axis=(0,),
            log_points=time_points(data["keys"], f),
            log_series=[{"outcome": "success"}, {"fallback": "yes"}, {}],
        )


class AttemptsByProviderChart(LedgerChartView):
    name, title = "attempts-by-provider", "Attempts by provider and outcome"

    def build(self, f: Filters) -> ChartData:
        data = attempts_by_provider(f)
        return ChartData(
            labels=data["providers"],
            label_title="provider",
            series_names=[outcome_label(o) for o in data["outcomes"]],
            data=[data["counts"][o] for o in data["outcomes"]],
            stacked=True,
            horizontal=True,
            colors=[OUTCOME_COLORS.get(o, "#999999") for o in data["outcomes"]],
            log_points=named("provider", data["providers"]),
        )


class FailureRatesChart(LedgerChartView):
    name, title = "failure-rates", "Failure rate by class and provider"

    def build(self, f: Filters) -> ChartData:
        data = failure_rates_by_provider(f)
        return ChartData(
            labels=data["providers"],
            label_title="provider",
            series_names=[outcome_label(c) for c in data["classes"]],
            data=[data["rates"][c] for c in data["classes"]],
            unit="%",
            stacked=True,
            colors=[OUTCOME_COLORS.get(c, "#999999") for c in data["classes"]],
            note="Share of each provider's attempts (skips and cancellations left out).",
            log_points=named("provider", data["providers"]),
        )


class _PercentileChart(LedgerChartView):
    metric = "latency"

    def build(self, f: Filters) -> ChartData:
        data = latency_percentiles(f)
        rows = [r for r in data["rows"] if self.metric == "latency" or r["streamed"]]
        method = "exact (nearest rank)" if data["method"] == "exact" else "≈ from histograms (within one bin)"
        return ChartData(
            labels=[f"{r['provider_name']} / {r['model']}" for r in rows],
            label_title="provider / model",
            series_names=["p50", "p95"],
            data=[[r[f"{self.metric}_p50"] for r in rows], [r[f"{self.metric}_p95"] for r in rows]],
            unit="ms",
            horizontal=True,
            colors=["#2a9d8f", "#e0822c"],
            note=f"Successful attempts; {method}.",
            log_points=[{"provider": r["provider_name"], "model": r["model"]} for r in rows],
        )


class LatencyChart(_PercentileChart):
    name, title, metric = "latency", "Latency p50 / p95 by provider and model", "latency"


class TtftChart(_PercentileChart):
    name, title, metric = "ttft", "Time to first token p50 / p95 (streams)", "ttft"


class FunnelChart(LedgerChartView):
    name, title = "funnel", "Fallback funnel: which step answers"

    def build(self, f: Filters) -> ChartData:
        data = fallback_funnel(f)
        chains = data["chains"]
        names = [f"Step {p + 1}" for p in data["positions"]] + ["Cache hit", "Not answered"]
        series = [[next((s["share"] for s in c["steps"] if s["position"] == p), None) for c in chains]
                  for p in data["positions"]]  # fmt: skip
        series += [[c["cache_share"] for c in chains], [c["unanswered_share"] for c in chains]]
        palette = ["#1f8a4c", "#e0a100", "#e0822c", "#c0392b", "#8e44ad", "#6c8a1f"]
        colors = [palette[i % len(palette)] for i in range(len(data["positions"]))] + ["#7fb3d5", "#5d6b7a"]
        return ChartData(
            labels=[c["name"] for c in chains],
            label_title="chain",
            series_names=names,
            data=series,
            unit="%",
            stacked=True,
            horizontal=True,
            colors=colors,
            note="Share of each chain's finished requests.",
            log_points=chain_points([c["chain_id"] for c in chains]),
            log_series=[
                {"outcome": "success", "fallback": "yes" if i else "no"}
                for i in range(len(data["positions"]))
            ]
            + [{"outcome": "cache_hit"}, {"outcome": "failed"}],
        )
