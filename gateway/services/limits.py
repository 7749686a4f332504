"""Per-key rate limits: requests per minute, a fixed one-minute window per key.

The count lives in the Django cache (Redis when REDIS_URL is set, so every worker shares it;
with the local-memory cache each worker process counts on its own): one increment per
request, nothing for a key without a limit. A key's spend budgets are checked and charged
by the providers budget service with the chain and global budgets (the key's limits travel
in the Caller).
"""

from __future__ import annotations

import math
import time

from django.core.cache import cache

from gateway.services.key_cache import KeyInfo
from rana_site.cache_io import cache_run

WINDOW_S = 60


class RateLimited(Exception):
    def __init__(self, limit: int, retry_after_s: int) -> None:
        super().__init__(
            f"Rate limit reached for this API key: {limit} requests per minute. "
            f"Try again in {retry_after_s} s."
        )
        self.limit = limit
        self.retry_after_s = retry_after_s


def _count(name: str) -> int:
    try:
        return cache.incr(name)
    except ValueError:
        return 1 if cache.add(name, 1, timeout=WINDOW_S * 2) else cache.incr(name)


async def key_rate_check(info: KeyInfo, *, now: float | None = None) -> None:
    """Count one request against the key's per-minute limit; raise RateLimited past it.
    The count is shared through the cache, read off the event loop when that is Redis."""
    if not info.rpm_limit:
        return
    now = time.time() if now is None else now
    window = int(now // WINDOW_S)
    count = await cache_run(_count, f"rana:rpm:{info.prefix}:{window}")
    if count > info.rpm_limit:
        raise RateLimited(info.rpm_limit, max(1, math.ceil((window + 1) * WINDOW_S - now)))
