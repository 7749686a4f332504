"""Budgets: chain and global spend per day and month, checked before any provider is tried.

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
class _Limit:
    scope: str  # "chain daily", "global monthly", ...
    chain_id: int | None
    period: str  # "day" | "month"
    limit: Decimal


def _period_start(period: str, now: dt.datetime) -> dt.datetime:
    local = timezone.localtime(now)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start.replace(day=1) if period == "month" else start


def _period_end(period: str, now: dt.datetime) -> dt.datetime:
    start = _period_start(period, now)
    if period == "day":
        return start + dt.timedelta(days=1)
    return (start + dt.timedelta(days=32)).replace(day=1)


def _limits(chain_id: int, daily, monthly) -> list[_Limit]:
    limits = []
    for scope, value, period, cid in (
        ("chain daily", daily, "day", chain_id),
        ("chain monthly", monthly, "month", chain_id),
        ("global daily", settings.RANA_GLOBAL_DAILY_BUDGET_USD, "day", None),
        ("global monthly", settings.RANA_GLOBAL_MONTHLY_BUDGET_USD, "month", None),
    ):
        if value is not None:
            limits.append(_Limit(scope, cid, period, Decimal(value)))
    return limits


def _key(limit: _Limit, now: dt.datetime) -> str:
    return f"rana:spend:{limit.chain_id or 'all'}:{limit.period}:{_period_start(limit.period, now):%Y%m%d}"


def _spent_nano(limit: _Limit, now: dt.datetime) -> int:
    key = _key(limit, now)
    value = cache.get(key)
    if value is None:
        rows = Completion.objects.filter(created_at__gte=_period_start(limit.period, now))
        if limit.chain_id is not None:
            rows = rows.filter(chain_id=limit.chain_id)
        total = rows.aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)
        value = int(total * NANO)
        cache.add(key, value, timeout=40 * 86400)
    return int(value)


def has_budget(daily, monthly) -> bool:
    return any(
        v is not None
        for v in (
            daily,
            monthly,
            settings.RANA_GLOBAL_DAILY_BUDGET_USD,
            settings.RANA_GLOBAL_MONTHLY_BUDGET_USD,
        )
    )


def budget_check(*, chain_id: int, daily, monthly, now: dt.datetime | None = None) -> None:
    """Raise BudgetExceeded naming the first budget already spent."""
    now = now or timezone.now()
    for limit in _limits(chain_id, daily, monthly):
        spent = Decimal(_spent_nano(limit, now)) / NANO
        if spent >= limit.limit:
            retry = int((_period_end(limit.period, now) - now).total_seconds()) + 1
            raise BudgetExceeded(limit.scope, limit.limit, spent, retry)


def budget_charge(
    *, chain_id: int, daily, monthly, cost_usd: Decimal, now: dt.datetime | None = None
) -> None:
    if not cost_usd:
        return
    now = now or timezone.now()
    for limit in _limits(chain_id, daily, monthly):
        # Not seeded yet (ValueError): the next check reads the ledger, which has this cost.
        with contextlib.suppress(ValueError):
            cache.incr(_key(limit, now), int(cost_usd * NANO))
