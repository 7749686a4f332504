"""Latency and time-to-first-token percentiles of answers (successful attempts).

Exact when the filtered range holds at most RANA_DASHBOARDS_EXACT_PERCENTILE_ROWS answers
(default 20,000): the raw latencies are read and the nearest-rank percentile is taken (p50 of
1, 2, 3, 4 is 2; p95 of 1..100 is 95). Above that, the percentile comes from the rollups'
fixed histograms (dashboards.rollups.bins): the bin holding the wanted rank is found exactly,
and the value is interpolated linearly inside it, as Prometheus' histogram_quantile does. The
exact value lies in the same bin, so the estimate is off by less than the bin's width: at most
28% of its lower edge, typically a few percent. Each result says which method it used.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from django.conf import settings

from dashboards.outcomes import SUCCESS
from dashboards.rollups.bins import LATENCY_FIELDS, TTFT_FIELDS, bin_bounds
from dashboards.rollups.specs import ATTEMPTS
from dashboards.selectors.filters import Filters
from dashboards.selectors.query import attempt_sums, dimension_filters

PERCENTILES = (50, 95)


def exact_limit() -> int:
    return settings.RANA_DASHBOARDS_EXACT_PERCENTILE_ROWS


def nearest_rank(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile of sorted values: the smallest value with p% at or below it."""
    if not values:
        return None
    return values[max(math.ceil(p / 100 * len(values)), 1) - 1]


def histogram_percentile(counts: Sequence[int], p: float) -> float | None:
    total = sum(counts)
    if not total:
        return None
    rank, below = p / 100 * total, 0
    for index, count in enumerate(counts):
        if count and below + count >= rank:
            low, high = bin_bounds(index)
            if math.isinf(high):
                return low
            return low + (high - low) * max(rank - below, 0) / count
        below += count
    return None


def _exact(f: Filters) -> dict[tuple[str, str], dict[str, list[float]]]:
    rows = (
        ATTEMPTS.raw_rows()
        .filter(
            started_at__gte=f.start, started_at__lt=f.end, outcome=SUCCESS, **dimension_filters(ATTEMPTS, f)
        )
        .values_list("provider_name", "model", "latency_ms", "ttft_ms")
    )
    values: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: {"latency": [], "ttft": []})
    for provider, model, latency, ttft in rows:
        values[(provider, model)]["latency"].append(latency)
        if ttft is not None:
            values[(provider, model)]["ttft"].append(ttft)
    return values


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def latency_percentiles(f: Filters) -> dict:
    """p50/p95 latency and TTFT per provider and model: {"method", "rows": [...]}."""
    needed = ("attempts", "ttft_count", *LATENCY_FIELDS, *TTFT_FIELDS)
    sums = attempt_sums(f, ("provider_name", "model"), where={"outcome": SUCCESS}, measures=needed)
    exact = sum(row["attempts"] for row in sums) <= exact_limit()
    raw = _exact(f) if exact else {}
    rows = []
    for row in sorted(sums, key=lambda r: (r["provider_name"], r["model"])):
        out = {"provider_name": row["provider_name"], "model": row["model"], "answers": row["attempts"]}
        out["streamed"] = row["ttft_count"]
        key = (row["provider_name"], row["model"])
        for metric, fields in (("latency", LATENCY_FIELDS), ("ttft", TTFT_FIELDS)):
            ordered = sorted(raw[key][metric]) if exact else []
            for p in PERCENTILES:
                value = (
                    nearest_rank(ordered, p) if exact else histogram_percentile([row[n] for n in fields], p)
                )
                out[f"{metric}_p{p}"] = _round(value)
        rows.append(out)
    return {"method": "exact" if exact else "histogram", "rows": rows}
