"""Per-key limits: requests per minute and daily / monthly spend.

Both live in the Django cache (Redis when REDIS_URL is set, so every worker shares them;
with the local-memory cache each worker process counts on its own). Nothing is read for a
key without limits.

Rate: a fixed one-minute window per key (one cache increment per request). Spend: integer
nano-dollars per key and period, seeded from the ledger (completions carry the key's
prefix) on a miss and charged as completions finish, like chain budgets.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import time
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import close_old_connections
from django.db.models import Sum
from django.utils import timezone

from gateway.services.key_cache import KeyInfo
from providers.models import Completion
from providers.services.budget import NANO, BudgetExceeded, _period_end, _period_start

WINDOW_S = 60


class RateLimited(Exception):
    def __init__(self, limit: int, retry_after_s: int) -> None:
        super().__init__(
            f"Rate limit reached for this API key: {limit} requests per minute. "
            f"Try again in {retry_after_s} s."
        )
        self.limit = limit
        self.retry_after_s = retry_after_s


def key_rate_check(info: KeyInfo, *, now: float | None = None) -> None:
    """Count one request against the key's per-minute limit; raise RateLimited past it."""
    if not info.rpm_limit:
        return
    now = time.time() if now is None else now
    window = int(now // WINDOW_S)
    name = f"rana:rpm:{info.prefix}:{window}"
    try:
        count = cache.incr(name)
    except ValueError:
        count = 1 if cache.add(name, 1, timeout=WINDOW_S * 2) else cache.incr(name)
    if count > info.rpm_limit:
        raise RateLimited(info.rpm_limit, max(1, math.ceil((window + 1) * WINDOW_S - now)))


def _limits(info: KeyInfo) -> list[tuple[str, str, Decimal]]:
    pairs = (("key daily", "day", info.daily_budget_usd), ("key monthly", "month", info.monthly_budget_usd))
    return [(scope, period, Decimal(limit)) for scope, period, limit in pairs if limit is not None]


def _spend_key(prefix: str, period: str, now: dt.datetime) -> str:
    return f"rana:keyspend:{prefix}:{period}:{_period_start(period, now):%Y%m%d}"


def _seed_spend(prefix: str, period: str, now: dt.datetime) -> int:
    """The key's spend this period from the ledger, cached (sync: runs off the event loop)."""
    close_old_connections()
    rows = Completion.objects.filter(gateway_key_prefix=prefix, created_at__gte=_period_start(period, now))
    total = rows.aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)
    value = int(total * NANO)
    cache.add(_spend_key(prefix, period, now), value, timeout=40 * 86400)
    return int(cache.get(_spend_key(prefix, period, now), value))


async def key_budget_check(info: KeyInfo, *, now: dt.datetime | None = None) -> None:
    """Raise BudgetExceeded (scope "key daily" / "key monthly") when a key budget is spent."""
    limits = _limits(info)
    if not limits:
        return
    now = now or timezone.now()
    for scope, period, limit in limits:
        spent_nano = cache.get(_spend_key(info.prefix, period, now))
        if spent_nano is None:
            spent_nano = await sync_to_async(_seed_spend, thread_sensitive=False)(info.prefix, period, now)
        spent = Decimal(int(spent_nano)) / NANO
        if spent >= limit:
            retry = int((_period_end(period, now) - now).total_seconds()) + 1
            raise BudgetExceeded(scope, limit, spent, retry)


def key_budget_charge(info: KeyInfo, cost_usd: Decimal, *, now: dt.datetime | None = None) -> None:
    """Add a finished completion's cost to the key's running spend (when it has a budget)."""
    if not cost_usd:
        return
    now = now or timezone.now()
    for _scope, period, _limit in _limits(info):
        # Not seeded yet (ValueError): the next check reads the ledger, which has this cost.
        with contextlib.suppress(ValueError):
            cache.incr(_spend_key(info.prefix, period, now), int(cost_usd * NANO))
