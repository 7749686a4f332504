"""What each kind of rule sees now: the conditions that hold, each with a stable key.

A condition's key names what fired ("circuit:3:gpt-4o", "fallback:2", "budget:key:rana_ab12cd34:day:80"),
so the same condition keeps the same key from one evaluation to the next.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from alerts.models import AlertRule, BudgetOwner, RuleKind
from alerts.selectors import error_rates, fallback_rates
from providers.models import FallbackChain
from providers.selectors import circuit_status
from providers.services import budget_usage

FIRING_STATES = ("open", "half_open")  # half-open: no probe has answered yet


@dataclass(frozen=True, slots=True)
class Condition:
    key: str
    summary: str
    details: dict = field(default_factory=dict)


def _pct(part: float, whole: float) -> float:
    return 100.0 * float(part) / float(whole)


def circuits_open(rule: AlertRule, now: dt.datetime) -> list[Condition]:
    rows = [r for r in circuit_status() if r["state"] in FIRING_STATES]
    if rule.provider_id is not None:
        rows = [r for r in rows if r["provider_id"] == rule.provider_id]
    return [
        Condition(
            f"circuit:{r['provider_id']}:{r['model']}",
            f"circuit {r['provider_name']} / {r['model']} is {r['state'].replace('_', '-')}"
            + (f" ({r['reason']})" if r["reason"] else ""),
            {key: r.get(key) for key in ("provider_id", "provider_name", "model", "state", "reason")},
        )
        for r in rows
    ]


def fallback_rate_over(rule: AlertRule, now: dt.datetime) -> list[Condition]:
    since = now - dt.timedelta(seconds=rule.window_s)
    conditions = []
    for row in fallback_rates(since=since, chain_id=rule.chain_id):
        requests, fallbacks = row["requests"], row["fallbacks"]
        if requests < rule.min_requests or _pct(fallbacks, requests) < rule.threshold_pct:
            continue
        conditions.append(
            Condition(
                f"fallback:{row['chain_id']}",
                f"chain {row['chain_slug']}: {_pct(fallbacks, requests):.1f} % of {requests} requests "
                f"fell back in the last {rule.window_s} s (threshold {rule.threshold_pct:g} %)",
                {**row, "rate_pct": round(_pct(fallbacks, requests), 2), "window_s": rule.window_s},
            )
        )
    return conditions


def error_rate_over(rule: AlertRule, now: dt.datetime) -> list[Condition]:
    since = now - dt.timedelta(seconds=rule.window_s)
    conditions = []
    for row in error_rates(since=since, provider_id=rule.provider_id):
        calls, errors = row["calls"], row["errors"]
        if calls < rule.min_requests or _pct(errors, calls) < rule.threshold_pct:
            continue
        conditions.append(
            Condition(
                f"errors:{row['provider_id']}",
                f"provider {row['provider_name']}: {_pct(errors, calls):.1f} % of {calls} calls failed "
                f"in the last {rule.window_s} s (threshold {rule.threshold_pct:g} %)",
                {**row, "rate_pct": round(_pct(errors, calls), 2), "window_s": rule.window_s},
            )
        )
    return conditions


def _budget_owners(rule: AlertRule) -> list[tuple[str, str, str, Decimal | None, Decimal | None]]:
    """(kind, ident, label, daily, monthly) of every budget the rule watches."""
    if rule.budget_owner == BudgetOwner.KEY:
        keys = AlertRule._meta.get_field("gateway_key").related_model.objects.filter(revoked_at__isnull=True)
        keys = keys.filter(pk=rule.gateway_key_id) if rule.gateway_key_id else keys
        fields = ("prefix", "name", "daily_budget_usd", "monthly_budget_usd")
        return [("key", p, f"gateway key {n}", d, m) for p, n, d, m in keys.values_list(*fields)]
    chains = FallbackChain.objects.filter(pk=rule.chain_id) if rule.chain_id else FallbackChain.objects.all()
    fields = ("pk", "slug", "daily_budget_usd", "monthly_budget_usd")
    return [("chain", str(pk), f"chain {s}", d, m) for pk, s, d, m in chains.values_list(*fields)]


def budget_past(rule: AlertRule, now: dt.datetime) -> list[Condition]:
    levels = sorted({rule.threshold_pct, 100.0})
    conditions = []
    for kind, ident, label, daily, monthly in _budget_owners(rule):
        if daily is None and monthly is None:
            continue
        for period, limit, spent in budget_usage(
            kind=kind, ident=ident, daily=daily, monthly=monthly, now=now
        ):
            if limit <= 0:
                continue
            pct = _pct(spent, limit)
            name = "daily" if period == "day" else "monthly"
            for level in (lv for lv in levels if pct >= lv):
                conditions.append(
                    Condition(
                        f"budget:{kind}:{ident}:{period}:{level:g}",
                        f"{label}: {pct:.0f} % of its {name} budget spent (${spent:.2f} of ${limit:.2f}), "
                        f"past {level:g} %",
                        {
                            "owner": kind,
                            "ident": ident,
                            "period": period,
                            "limit_usd": str(limit),
                            "spent_usd": str(spent),
                            "spent_pct": round(pct, 2),
                            "level_pct": level,
                        },
                    ),
                )
    return conditions


CHECKS = {
    RuleKind.BREAKER_OPEN: circuits_open,
    RuleKind.FALLBACK_RATE: fallback_rate_over,
    RuleKind.ERROR_RATE: error_rate_over,
    RuleKind.BUDGET: budget_past,
}


def rule_conditions(rule: AlertRule, now: dt.datetime) -> list[Condition]:
    return CHECKS[RuleKind(rule.kind)](rule, now)
