"""Fixed latency bins shared by the rollup tables, the rollup builders and the percentile math.

Ten bins per decade (the R10 series: 10, 12.5, 16, 20, 25, 32, 40, 50, 64, 80 ms, ...) from
10 ms to 100 s, plus one bin below 10 ms and one at 100 s and above: 42 bins. A value v falls
in bin i when EDGES[i - 1] <= v < EDGES[i] (bin 0 is [0, 10 ms), bin 41 is [100 s, inf)).
Neighbouring edges are at most 28% apart, which bounds how far a percentile read from these
bins can be from the exact one (see dashboards/selectors/percentiles.py).
"""

from __future__ import annotations

from bisect import bisect_right

_R10 = (10, 12.5, 16, 20, 25, 32, 40, 50, 64, 80)

EDGES_MS: tuple[float, ...] = (*(base * 10**k for k in range(4) for base in _R10), 100_000)
BIN_COUNT = len(EDGES_MS) + 1  # 42

LATENCY_FIELDS = tuple(f"lat_b{i:02d}" for i in range(BIN_COUNT))
TTFT_FIELDS = tuple(f"ttft_b{i:02d}" for i in range(BIN_COUNT))


def bin_index(value_ms: float) -> int:
    return bisect_right(EDGES_MS, value_ms)


def bin_bounds(index: int) -> tuple[float, float]:
    """[low, high) of a bin in ms; the last bin's high is infinity."""
    low = 0.0 if index == 0 else float(EDGES_MS[index - 1])
    high = float(EDGES_MS[index]) if index < len(EDGES_MS) else float("inf")
    return low, high
