"""Budget burn: spend this day and this month against each chain's budget and the global one.

Periods are the ones the budget check enforces (providers.services.budget): the calendar day
and month in settings.TIME_ZONE, counting every completion's cost (injected faults too, and
regardless of the page's other filters; only the chain filter narrows the list). The projected
month-end figure extrapolates this month's spend linearly:
    projected = spent this month x (length of the month / time elapsed in it).
Completions with usage but no price are counted per chain: their real cost is missing.
Refused requests (budget_blocked, by any budget: key, chain or global) are counted per chain
as requests, not ledger rows: one sampled row stands for `represents` refusals.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from dashboards.selectors.filters import Filters, default_tz
from dashboards.selectors.query import completion_sums
from dashboards.selectors.reliability import pct
from providers.models import FallbackChain

CENT = Decimal("0.01")
BUDGET_BLOCKED = "budget_blocked"


def _periods(now: dt.datetime) -> tuple[dt.datetime, dt.datetime, dt.datetime]:
    local = timezone.localtime(now, default_tz())
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    next_month = (month + dt.timedelta(days=32)).replace(day=1)
    return day, month, next_month


def _spend(start: dt.datetime, end: dt.datetime, chain_id: int | None) -> dict[int, dict]:
    f = Filters(start=start, end=end, tz=default_tz(), chain_id=chain_id, include_injected=True)
    rows = completion_sums(f, ("chain_id",), measures=("cost_usd", "unpriced")) if end > start else []
    return {row["chain_id"]: row for row in rows}


def _refused(start: dt.datetime, end: dt.datetime, chain_id: int | None) -> dict[int, int]:
    f = Filters(start=start, end=end, tz=default_tz(), chain_id=chain_id, include_injected=True)
    where = {"outcome": BUDGET_BLOCKED}
    rows = completion_sums(f, ("chain_id",), where=where, measures=("completions",)) if end > start else []
    return {row["chain_id"]: row["completions"] for row in rows}


def _line(
    name: str,
    spent_day: Decimal,
    spent_month: Decimal,
    daily,
    monthly,
    factor: Decimal,
    unpriced: int,
    refused: tuple[int, int] = (0, 0),
):
    projected = spent_month * factor
    daily = Decimal(daily) if daily is not None else None
    monthly = Decimal(monthly) if monthly is not None else None
    return {
        "name": name,
        "spent_day": spent_day,
        "daily_budget": daily,
        "day_share": pct(spent_day, daily) if daily else None,
        "spent_month": spent_month,
        "monthly_budget": monthly,
        "month_share": pct(spent_month, monthly) if monthly else None,
        "projected_month": projected,
        "projected_share": pct(projected, monthly) if monthly else None,
        "unpriced": unpriced,
        "refused_day": refused[0],
        "refused_month": refused[1],
    }


def budget_burn(*, now: dt.datetime, chain_id: int | None = None) -> dict:
    """{"chains": [...], "global": {...} | None, "month_elapsed": share, "period": ...}."""
    day, month, next_month = _periods(now)
    elapsed = Decimal((now - month).total_seconds())
    factor = Decimal((next_month - month).total_seconds()) / elapsed if elapsed > 0 else Decimal(0)
    today, this_month = _spend(day, now, chain_id), _spend(month, now, chain_id)
    refused_today, refused_month = _refused(day, now, chain_id), _refused(month, now, chain_id)
    chains = FallbackChain.objects.order_by("name")
    if chain_id is not None:
        chains = chains.filter(id=chain_id)
    zero = {"cost_usd": Decimal(0), "unpriced": 0}
    lines = []
    for chain in chains:
        spent = this_month.get(chain.id, zero)
        refused = (refused_today.get(chain.id, 0), refused_month.get(chain.id, 0))
        budgeted = chain.daily_budget_usd is not None or chain.monthly_budget_usd is not None
        if not budgeted and not spent["cost_usd"] and not refused[1]:
            continue
        spent_day = today.get(chain.id, zero)["cost_usd"]
        lines.append(
            _line(chain.name, spent_day, spent["cost_usd"], chain.daily_budget_usd, chain.monthly_budget_usd,
                  factor, spent["unpriced"], refused)
        )  # fmt: skip
    glob = None
    if chain_id is None:
        glob = _line(
            "All chains",
            sum((r["cost_usd"] for r in today.values()), Decimal(0)),
            sum((r["cost_usd"] for r in this_month.values()), Decimal(0)),
            settings.RANA_GLOBAL_DAILY_BUDGET_USD,
            settings.RANA_GLOBAL_MONTHLY_BUDGET_USD,
            factor,
            sum(r["unpriced"] for r in this_month.values()),
            (sum(refused_today.values()), sum(refused_month.values())),
        )
    return {
        "chains": lines,
        "global": glob,
        "month_elapsed": pct(elapsed, Decimal((next_month - month).total_seconds())),
        "day_start": day,
        "month_start": month,
        "timezone": default_tz().key,
    }
