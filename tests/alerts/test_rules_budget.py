"""Budget rules: chain and gateway-key budgets, daily and monthly, past the threshold and 100 %.

Budget spend is read as budgets read it (the cache, seeded from the ledger on a miss, which
closes old connections): these tests need real transactions."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.cache import cache

from alerts.models import AlertRule, BudgetOwner, RuleKind
from alerts.services import alerts_evaluate
from gateway.models import GatewayKey
from tests.alerts.conftest import seed_completion

pytestmark = pytest.mark.django_db(transaction=True)


def _rule(**fields) -> AlertRule:
    return AlertRule.objects.create(name="budget", kind=RuleKind.BUDGET, **fields)


def test_chain_budget_fires_at_80_and_again_at_100_percent(ready_chain):
    ready_chain.daily_budget_usd = Decimal(10)
    ready_chain.save()
    _rule(budget_owner=BudgetOwner.CHAIN, threshold_pct=80)
    seed_completion(ready_chain, cost="7.99")
    assert alerts_evaluate() == []
    cache.clear()  # the spend counter, re-read from the ledger (as after a charge)
    seed_completion(ready_chain, cost="0.01")  # exactly 80 %
    [event] = alerts_evaluate()
    assert (
        event.condition == f"budget:chain:{ready_chain.pk}:day:80"
        and "80 % of its daily budget" in event.summary
    )
    cache.clear()
    seed_completion(ready_chain, cost="2")
    [event] = alerts_evaluate()
    assert event.condition == f"budget:chain:{ready_chain.pk}:day:100"


def test_gateway_key_monthly_budget(ready_chain):
    key = GatewayKey.objects.create(
        name="bot", prefix="rana_abcd1234", key_hash="x" * 64, monthly_budget_usd=100
    )
    _rule(budget_owner=BudgetOwner.KEY, gateway_key=key, threshold_pct=80)
    seed_completion(ready_chain, cost="85", key_prefix="rana_abcd1234")
    [event] = alerts_evaluate()
    assert event.condition == "budget:key:rana_abcd1234:month:80" and "gateway key bot" in event.summary
