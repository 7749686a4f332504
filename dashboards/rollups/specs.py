"""What each rollup table sums, and how: one description read by builders and readers alike.

A LedgerSpec ties a ledger table (Attempt, Completion) to its rollup table: the time field,
the dimensions (with the stand-in for NULL), the measures as SQL aggregates over raw rows
and as Python accumulators over model instances. The SQL and Python forms must agree to the
last count; tests/dashboards/test_rollups.py checks that they do. The completion count is a
count of requests: the sum of `represents` (1 on every row but the sampled budget refusals).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import models
from django.db.models import Count, Q, Sum

from dashboards.models import AttemptRollup, CompletionRollup
from dashboards.rollups.bins import BIN_COUNT, LATENCY_FIELDS, TTFT_FIELDS, bin_bounds, bin_index
from providers.models import Attempt, Completion

Row = dict[str, Any]
_NAMES: dict[tuple[str, bool], tuple[str, ...]] = {}
_AGGREGATES: dict[str, dict[str, models.Aggregate]] = {}


@dataclass(frozen=True)
class LedgerSpec:
    raw: type[models.Model]
    rollup: type[models.Model]
    time_field: str
    dims: dict[str, Any]  # dimension -> the value standing for NULL
    raw_measures: Callable[[bool], dict[str, models.Aggregate]]
    accumulate: Callable[[Row, Any], None]  # adds one ledger row to a measures dict
    raw_exclude: Q | None = None  # ledger rows a rollup never holds

    @property
    def measure_names(self) -> tuple[str, ...]:
        return self.names(True)

    def names(self, histograms: bool) -> tuple[str, ...]:
        key = (self.raw.__name__, histograms)
        if key not in _NAMES:
            _NAMES[key] = tuple(self.raw_measures(histograms))
        return _NAMES[key]

    def raw_rows(self) -> models.QuerySet:
        rows = self.raw.objects.order_by()
        return rows.exclude(self.raw_exclude) if self.raw_exclude is not None else rows

    def key_of(self, row: Any) -> tuple:
        return tuple(_or(getattr(row, name), none) for name, none in self.dims.items())

    def key_of_values(self, values: Row) -> tuple:
        return tuple(_or(values[name], none) for name, none in self.dims.items())

    def _names(self, names: Sequence[str] | None) -> Sequence[str]:
        return self.names(True) if names is None else names

    def empty_measures(self, names: Sequence[str] | None = None) -> Row:
        return {name: _zero(name) for name in self._names(names)}

    def raw_aggregates(self, names: Sequence[str] | None = None) -> dict[str, models.Aggregate]:
        """SQL aggregates over ledger rows, aliased m_<measure> (aliases may not shadow fields)."""
        every = _AGGREGATES.get(self.raw.__name__)
        if every is None:
            every = _AGGREGATES[self.raw.__name__] = self.raw_measures(True)
        return {f"m_{name}": every[name] for name in self._names(names)}

    def rollup_aggregates(self, names: Sequence[str] | None = None) -> dict[str, models.Aggregate]:
        return {f"m_{name}": Sum(name) for name in self._names(names)}

    def measures_of(self, values: Row, names: Sequence[str] | None = None) -> Row:
        """The measures of an aggregated row, NULL sums read as zero."""
        out = {}
        for name in self._names(names):
            value = values[f"m_{name}"]
            out[name] = _zero(name) if value is None else value
        return out


def _or(value: Any, none: Any) -> Any:
    return none if value is None else value


def _zero(name: str) -> Any:
    if name == "cost_usd":
        return Decimal(0)
    return 0.0 if name.endswith("_ms_sum") else 0


def _bin_counts(field: str, names: tuple[str, ...]) -> dict[str, models.Aggregate]:
    counts = {}
    for index, name in enumerate(names):
        low, high = bin_bounds(index)
        condition = Q(**{f"{field}__gte": low}) if index else Q(**{f"{field}__isnull": False})
        if index < BIN_COUNT - 1:
            condition &= Q(**{f"{field}__lt": high})
        counts[name] = Count("id", filter=condition)
    return counts


def _attempt_measures(histograms: bool) -> dict[str, models.Aggregate]:
    measures = {
        "attempts": Count("id"),
        "latency_ms_sum": Sum("latency_ms"),
        "ttft_count": Count("ttft_ms"),
        "ttft_ms_sum": Sum("ttft_ms"),
        "input_tokens": Sum("input_tokens"),
        "output_tokens": Sum("output_tokens"),
        "cached_tokens": Sum("cached_tokens"),
        "cost_usd": Sum("cost_usd"),
        "unpriced": Count("id", filter=Q(unpriced=True)),
    }
    if histograms:
        measures |= _bin_counts("latency_ms", LATENCY_FIELDS) | _bin_counts("ttft_ms", TTFT_FIELDS)
    return measures


def _attempt_accumulate(measures: Row, row: Attempt) -> None:
    measures["attempts"] += 1
    measures["latency_ms_sum"] += row.latency_ms
    if row.ttft_ms is not None:
        measures["ttft_count"] += 1
        measures["ttft_ms_sum"] += row.ttft_ms
        measures[TTFT_FIELDS[bin_index(row.ttft_ms)]] += 1
    measures[LATENCY_FIELDS[bin_index(row.latency_ms)]] += 1
    measures["input_tokens"] += row.input_tokens
    measures["output_tokens"] += row.output_tokens
    measures["cached_tokens"] += row.cached_tokens
    if row.cost_usd is not None:
        measures["cost_usd"] += Decimal(row.cost_usd)
    measures["unpriced"] += bool(row.unpriced)


def _completion_measures(histograms: bool) -> dict[str, models.Aggregate]:
    # Requests, not rows: a sampled budget_blocked row stands for `represents` refusals.
    return {
        "completions": Sum("represents"),
        "attempt_count": Sum("attempt_count"),
        "latency_ms_sum": Sum("latency_ms"),
        "input_tokens": Sum("input_tokens"),
        "output_tokens": Sum("output_tokens"),
        "cached_tokens": Sum("cached_tokens"),
        "cost_usd": Sum("cost_usd"),
        "unpriced": Count("id", filter=Q(unpriced=True)),
    }


def _completion_accumulate(measures: Row, row: Completion) -> None:
    measures["completions"] += row.represents
    measures["attempt_count"] += row.attempt_count
    measures["latency_ms_sum"] += row.latency_ms or 0.0
    measures["input_tokens"] += row.input_tokens
    measures["output_tokens"] += row.output_tokens
    measures["cached_tokens"] += row.cached_tokens
    measures["cost_usd"] += Decimal(row.cost_usd or 0)
    measures["unpriced"] += bool(row.unpriced)


ATTEMPTS = LedgerSpec(
    raw=Attempt,
    rollup=AttemptRollup,
    time_field="started_at",
    dims={
        "chain_id": 0,
        "source": "",
        "provider_name": "",
        "provider_kind": "",
        "model": "",
        "step_position": 0,
        "outcome": "",
        "injected": False,
    },
    raw_measures=_attempt_measures,
    accumulate=_attempt_accumulate,
)

COMPLETIONS = LedgerSpec(
    raw=Completion,
    rollup=CompletionRollup,
    time_field="created_at",
    dims={
        "chain_id": 0,
        "source": "",
        "gateway_key_prefix": "",
        "outcome": "",
        "injected": False,
        "answered_provider_id": 0,
        "answered_model": "",
        "answered_step": -1,
        "fallback_used": False,
    },
    raw_measures=_completion_measures,
    accumulate=_completion_accumulate,
    raw_exclude=Q(outcome="running"),  # in flight: counted once it has finished
)
