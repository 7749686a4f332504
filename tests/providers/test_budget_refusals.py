"""Refusals by a spent budget are counted, not written one ledger row each: at most one
sampled budget_blocked row per budget, chain and caller per interval, whose `represents` the
rollups and the dashboards sum, so they still show every refused request."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from decimal import Decimal

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db.models import Sum
from django.utils import timezone

from dashboards.models import CompletionRollup, Grain
from dashboards.rollups.rebuild import rollups_rebuild
from dashboards.selectors.budget import budget_burn
from dashboards.selectors.filters import Filters, default_tz
from dashboards.selectors.query import completion_sums
from dashboards.selectors.reliability import reliability_summary
from gateway.services.keys import gateway_key_create
from providers.models import Completion, FallbackChain
from providers.services import service_shutdown
from providers.services.budget import BudgetExceeded
from providers.services.budget_refusals import refusals
from providers.services.completions import complete
from providers.services.ledger import Caller
from tests.providers import budget_fixtures
from tests.providers.budget_fixtures import SlowAdapter, overrides

pytestmark = pytest.mark.django_db(transaction=True)
priced_chain = budget_fixtures.priced_chain

HELLO = [{"role": "user", "content": "hello"}]
INTERVAL_S = 0.3


@pytest.fixture
def short_interval(settings):
    settings.RANA_BUDGET_REFUSAL_SAMPLE_S = INTERVAL_S
    return INTERVAL_S


@pytest.fixture
def spent_chain(priced_chain):
    """A chain whose $0 daily budget is spent before anything is asked."""
    FallbackChain.objects.filter(pk=priced_chain.pk).update(daily_budget_usd=Decimal("0"))
    return priced_chain


async def _blocked_rows() -> list[tuple[int, str]]:
    rows = Completion.objects.filter(outcome="budget_blocked").order_by("created_at")
    return [(row.represents, row.error_class) async for row in rows]


async def test_one_refusal_is_written_at_once_and_later_ones_are_counted_into_one_row(
    spent_chain, short_interval
):
    adapter = SlowAdapter()
    for _ in range(5):
        with pytest.raises(BudgetExceeded) as info:
            await complete(messages=HELLO, overrides=overrides(adapter))
        assert info.value.scope == "chain daily" and info.value.request_id
    assert await _blocked_rows() == [(1, "budget_blocked")]  # the first, at once
    assert refusals.pending() == 4 and adapter.calls == 0
    deadline = time.monotonic() + 5
    while len(await _blocked_rows()) < 2 and time.monotonic() < deadline:  # the interval ends
        await asyncio.sleep(0.02)
    assert await _blocked_rows() == [(1, "budget_blocked"), (4, "budget_blocked")]
    assert refusals.pending() == 0


async def test_callers_and_budgets_are_sampled_apart(spent_chain, short_interval):
    callers = [Caller(source="api", gateway_key_prefix=p) for p in ("rk_one", "rk_two")]
    for caller in callers * 3:
        with pytest.raises(BudgetExceeded):
            await complete(messages=HELLO, caller=caller, overrides=overrides(SlowAdapter()))
    rows = Completion.objects.filter(outcome="budget_blocked")
    assert sorted([r.gateway_key_prefix async for r in rows]) == ["rk_one", "rk_two"]
    await service_shutdown()  # a graceful stop writes what is counted
    totals = rows.values("gateway_key_prefix").annotate(n=Sum("represents")).order_by("gateway_key_prefix")
    assert [(t["gateway_key_prefix"], t["n"]) async for t in totals] == [("rk_one", 3), ("rk_two", 3)]


def _refusal_counts(now: dt.datetime) -> dict[str, int]:
    """How many refusals each dashboard figure shows for the last hour (and today)."""
    f = Filters(start=now - dt.timedelta(hours=1), end=now + dt.timedelta(seconds=1), tz=default_tz())
    by_outcome = completion_sums(f, ("outcome",), measures=("completions",))
    burn = budget_burn(now=now + dt.timedelta(seconds=1))
    rollup = CompletionRollup.objects.filter(grain=Grain.HOUR, outcome="budget_blocked").aggregate(
        n=Sum("completions")
    )
    return {
        "by_outcome": sum(r["completions"] for r in by_outcome if r["outcome"] == "budget_blocked"),
        "requests": reliability_summary(f)["requests"],
        "budget_burn": burn["global"]["refused_day"],
        "rollup": rollup["n"] or 0,
    }


async def test_hammering_a_spent_budget_writes_a_row_per_interval_and_the_dashboards_count_every_429(
    spent_chain, short_interval
):
    _info, key = await sync_to_async(gateway_key_create)(name="hammer")
    from rana_site.asgi import application

    transport = httpx.ASGITransport(app=application)
    statuses: list[int] = []
    bodies: set[bytes] = set()
    started = time.monotonic()
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:

        async def hammer() -> None:
            while time.monotonic() - started < 4 * INTERVAL_S:
                response = await client.post(
                    "/v1/chat/completions",
                    json={"model": "budgeted", "messages": HELLO},
                    headers={"Authorization": f"Bearer {key}"},
                )
                statuses.append(response.status_code)
                bodies.add(response.content)
                assert response.headers["x-rana-request-id"] and response.headers["x-should-retry"] == "false"

        await asyncio.gather(*(hammer() for _ in range(8)))
    elapsed = time.monotonic() - started
    refused = len(statuses)
    assert set(statuses) == {429} and refused > 50
    assert bodies == {
        b'{"error":{"message":"chain daily budget reached: $0.00 spent of $0.00",'
        b'"type":"insufficient_quota","param":null,"code":"budget_exceeded"}}'
    }
    rows = await Completion.objects.filter(outcome="budget_blocked").acount()
    assert rows <= elapsed / INTERVAL_S + 2, (rows, refused)  # not one row per refusal
    await service_shutdown()  # what the last interval counted is written at a graceful stop
    assert await Completion.objects.filter(outcome="budget_blocked").acount() <= elapsed / INTERVAL_S + 3
    now = timezone.now()
    total = await Completion.objects.aaggregate(n=Sum("represents"))
    assert total["n"] == refused
    counts = await sync_to_async(_refusal_counts)(now)
    assert counts == {"by_outcome": refused, "requests": refused, "budget_burn": refused, "rollup": refused}
    # A rebuild of the rollups from the ledger counts them the same way.
    hour = now.replace(minute=0, second=0, microsecond=0)
    await sync_to_async(rollups_rebuild)(start=hour - dt.timedelta(hours=1), end=hour + dt.timedelta(hours=1))
    assert (await sync_to_async(_refusal_counts)(now))["rollup"] == refused
