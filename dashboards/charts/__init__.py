"""Every chart, by the name its URL uses (dashboards:chart)."""

from __future__ import annotations

from dashboards.charts.base import LedgerChartView
from dashboards.charts.cost import (
    FailureCostChart,
    FallbackPremiumChart,
    SpendByKeyChart,
    SpendByModelChart,
    SpendByProviderChart,
    SpendBySourceChart,
    TokensChart,
)
from dashboards.charts.reliability import (
    AttemptsByProviderChart,
    FailureRatesChart,
    FunnelChart,
    LatencyChart,
    RatesChart,
    TtftChart,
)

RELIABILITY_CHARTS: list[type[LedgerChartView]] = [
    RatesChart,
    AttemptsByProviderChart,
    FailureRatesChart,
    LatencyChart,
    TtftChart,
    FunnelChart,
]
COST_CHARTS: list[type[LedgerChartView]] = [
    SpendByProviderChart,
    SpendByModelChart,
    TokensChart,
    FailureCostChart,
    FallbackPremiumChart,
    SpendBySourceChart,
    SpendByKeyChart,
]
CHARTS: dict[str, type[LedgerChartView]] = {c.name: c for c in (*RELIABILITY_CHARTS, *COST_CHARTS)}
