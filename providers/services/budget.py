"""Budgets: gateway key, chain and global spend per day and month, checked before any provider
is tried, in one place for every scope.

Spend is kept as integer nano-dollars in the cache (Redis when REDIS_URL is set, so every
worker shares it), seeded from the ledger on a miss and charged as completions finish.
Nothing is read when no budget is configured.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections
from django.db.models import Sum
from django.utils import timezone

from providers.models import Completion

NANO = Decimal(1_000_000_000)


class BudgetExceeded(Exception):
    def __init__(self, scope: str, limit: Decimal, spent: Decimal, retry_after_s: int) -> None:
        self.scope = scope
        self.limit = limit
        self.spent = spent
        self.retry_after_s = retry_after_s
        super().__init__(
            f"{scope} budget reached: ${spent.quantize(Decimal('0.01'))} spent of "
            f"${limit.quantize(Decimal('0.01'))}"
        )


@dataclass(frozen=True, slots=True)
class BudgetScope:
    """Who a budget belongs to: a chain (by id), a gateway key (by prefix) or every request."""

    kind: str  # "chain" | "key" | "global"
    ident: str  # the chain id, the key prefix, or "all"
    daily: Decimal | None
    monthly: Decimal | None


def budget_scopes(
    *,
    chain_id: int | None,
    chain_daily,
    chain_monthly,
    key_prefix: str = "",
    key_daily=None,
    key_monthly=None,
) -> tuple[BudgetScope, ...]:
    """The scopes with at least one limit that apply to a request: key, chain, then global."""
    scopes = (
        BudgetScope("key", key_prefix, key_daily, key_monthly) if key_prefix else None,
        BudgetScope("chain", str(chain_id), chain_daily, chain_monthly) if chain_id is not None else None,
        BudgetScope(
            "global", "all", settings.RANA_GLOBAL_DAILY_BUDGET_USD, settings.RANA_GLOBAL_MONTHLY_BUDGET_USD
        ),
    )
    return tuple(s for s in scopes if s is not None and (s.daily is not None or s.monthly is not None))


def period_start(period: str, now: dt.datetime) -> dt.datetime:
    """The start of the day or month (local time) that `now` falls in."""
    local = timezone.localtime(now)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start.replace(day=1) if period == "month" else start


def period_end(period: str, now: dt.datetime) -> dt.datetime:
    start = period_start(period, now)
    if period == "day":
        return start + dt.timedelta(days=1)
    return (start + dt.timedelta(days=32)).replace(day=1)


def _limits(scope: BudgetScope) -> list[tuple[str, Decimal]]:
    pairs = (("day", scope.daily), ("month", scope.monthly))
    return [(period, Decimal(limit)) for period, limit in pairs if limit is not None]


def _cache_key(scope: BudgetScope, period: str, now: dt.datetime) -> str:
    day = f"{period_start(period, now):%Y%m%d}"
    if scope.kind == "key":
        return f"rana:keyspend:{scope.ident}:{period}:{day}"
    return f"rana:spend:{scope.ident if scope.kind == 'chain' else 'all'}:{period}:{day}"


def _spent_nano(scope: BudgetScope, period: str, now: dt.datetime) -> int:
    """Spend so far from the cache; on a miss, from the ledger (then cached)."""
    key = _cache_key(scope, period, now)
    value = cache.get(key)
    if value is None:
        close_old_connections()
        rows = Completion.objects.filter(created_at__gte=period_start(period, now))
        if scope.kind == "chain":
            rows = rows.filter(chain_id=int(scope.ident))
        elif scope.kind == "key":
            rows = rows.filter(gateway_key_prefix=scope.ident)
        total = rows.aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)
        cache.add(key, int(total * NANO), timeout=40 * 86400)
        value = cache.get(key, int(total * NANO))
    return int(value)


def budget_check(*, scopes: tuple[BudgetScope, ...], now: dt.datetime | None = None) -> None:
    """Raise BudgetExceeded naming the first budget already spent ("key daily", ...).

    Blocking (cache and, on a miss, the database): async callers run it off the event loop."""
    now = now or timezone.now()
    for scope in scopes:
        for period, limit in _limits(scope):
            spent = Decimal(_spent_nano(scope, period, now)) / NANO
            if spent >= limit:
                retry = int((period_end(period, now) - now).total_seconds()) + 1
                name = f"{scope.kind} {'daily' if period == 'day' else 'monthly'}"
                raise BudgetExceeded(name, limit, spent, retry)


def budget_charge(
    *, scopes: tuple[BudgetScope, ...], cost_usd: Decimal, now: dt.datetime | None = None
) -> None:
    """Add a finished completion's cost to every scope's running spend (blocking, like the check)."""
    if not cost_usd:
        return
    now = now or timezone.now()
    for scope in scopes:
        for period, _limit in _limits(scope):
            # Not seeded yet (ValueError): the next check reads the ledger, which has this cost.
            with contextlib.suppress(ValueError):
                cache.incr(_cache_key(scope, period, now), int(cost_usd * NANO))
