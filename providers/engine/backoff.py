"""Full-jitter exponential backoff (AWS Architecture Blog, "Exponential Backoff And Jitter").

The wait before a retry is drawn uniformly from [0, min(cap, base * 2**n)], where n is the
retry index of the attempt that just failed (0 for the first try). A Retry-After the
provider sent wins when it is longer than the draw.
"""

from __future__ import annotations

import random


def backoff_ceiling(retry_index: int, *, base_s: float, cap_s: float) -> float:
    """The largest wait full jitter may draw after the attempt with this retry index failed."""
    return max(0.0, min(cap_s, base_s * 2**retry_index))


def backoff_delay(
    retry_index: int,
    *,
    base_s: float,
    cap_s: float,
    rng: random.Random,
    retry_after_s: float | None = None,
) -> float:
    """Seconds to wait before the next try of the same step."""
    delay = rng.uniform(0.0, backoff_ceiling(retry_index, base_s=base_s, cap_s=cap_s))
    if retry_after_s is not None and retry_after_s > delay:
        return retry_after_s
    return delay
