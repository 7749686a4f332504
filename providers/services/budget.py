"""Budgets: gateway key, chain and global spend per day and month, enforced exactly under
concurrency, in one place for every scope.

Spend is kept as integer nano-dollars in the cache (Redis when REDIS_URL is set, so every
worker shares it), seeded from the ledger on a miss. Before any provider is tried a request
holds its estimated cost (budget_estimate) on every limit it falls under, in one atomic
check-and-reserve (budget_store: a Lua script on Redis, a lock per process otherwise); it is
refused when a limit's spend plus what requests in flight hold has reached the limit. When it
ends, however it ends, budget_settle releases the hold and charges what its attempts really
cost. So concurrent requests cannot all pass a check that none of them has been charged for
yet: the spend of a budget stays under its limit plus one request's cost (the one admitted
last), plus whatever requests cost beyond their estimates. A hold carries an expiry (the
chain's deadline plus HOLD_GRACE_S): a process that dies mid-request cannot keep it.

The estimate is an upper bound taken from the request: prompt tokens at ~4 characters a
token (messages, tool calls, tool definitions and the response format's schema, 4 tokens per
message and IMAGE_TOKENS per image on top), plus max_tokens or, without it,
RANA_BUDGET_DEFAULT_OUTPUT_TOKENS (request_tokens), every input token at the full input price
of the first step the request will try (the chain's strategy orders the steps before this).
A first step without a price holds nothing (the request is still checked). It
can fall short when a fallback step is dearer, retries are billed, a provider adds a thinking
budget on top of max_tokens or a tokenizer packs fewer characters per token.

Nothing is read when no budget is configured.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections
from django.db.models import Sum
from django.utils import timezone

from providers.engine.cost import attempt_cost
from providers.engine.plan import ChainPlan
from providers.engine.types import ChatParams, ImagePart, Message, Usage
from providers.models import Completion
from providers.services.budget_store import Line, store

NANO = Decimal(1_000_000_000)
CHARS_PER_TOKEN = 4
MESSAGE_TOKENS = 4  # role and separators, per message
IMAGE_TOKENS = 1600  # about what the providers bill for one large image
HOLD_GRACE_S = 120  # a hold lapses this long after the chain's deadline
HELD_RETRY_S = 1  # Retry-After when only holds of requests in flight fill the budget
SPEND_TTL_S = 40 * 86400


class BudgetExceeded(Exception):
    def __init__(
        self, scope: str, limit: Decimal, spent: Decimal, retry_after_s: int, held: Decimal = Decimal(0)
    ) -> None:
        self.scope = scope
        self.limit = limit
        self.spent = spent
        self.held = held  # what requests in flight hold on top of `spent`
        self.retry_after_s = retry_after_s
        cents = Decimal("0.01")
        message = f"{scope} budget reached: ${spent.quantize(cents)} spent of ${limit.quantize(cents)}"
        if held and spent < limit:
            message += f" and ${held.quantize(cents)} more held by requests in flight"
        super().__init__(message)


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


@dataclass(frozen=True, slots=True)
class _Limit:
    scope: BudgetScope
    period: str
    limit: Decimal
    line: Line

    @property
    def name(self) -> str:
        return f"{self.scope.kind} {'daily' if self.period == 'day' else 'monthly'}"


def _limits_of(scopes: tuple[BudgetScope, ...], now: dt.datetime) -> tuple[_Limit, ...]:
    return tuple(
        _Limit(scope, period, limit, Line(_cache_key(scope, period, now), int(limit * NANO)))
        for scope in scopes
        for period, limit in _limits(scope)
    )


def _seed(limit: _Limit, now: dt.datetime) -> None:
    """A counter the cache does not have: the ledger's spend in the period (then cached)."""
    close_old_connections()
    rows = Completion.objects.filter(created_at__gte=period_start(limit.period, now))
    if limit.scope.kind == "chain":
        rows = rows.filter(chain_id=int(limit.scope.ident))
    elif limit.scope.kind == "key":
        rows = rows.filter(gateway_key_prefix=limit.scope.ident)
    total = rows.aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)
    cache.add(limit.line.spend_key, int(total * NANO), timeout=SPEND_TTL_S)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Hold:
    """What one request holds on its budgets until it is settled (once)."""

    limits: tuple[_Limit, ...]
    token: str
    amount_nano: int  # 0: nothing held (an unpriced first step, or no budget)
    settled: bool = field(default=False)

    @property
    def lines(self) -> tuple[Line, ...]:
        return tuple(limit.line for limit in self.limits)


def budget_reserve(
    *,
    scopes: tuple[BudgetScope, ...],
    token: str,
    estimate_usd: Decimal = Decimal(0),
    ttl_s: int = 3600,
    now: dt.datetime | None = None,
) -> Hold:
    """Check every budget and hold `estimate_usd` on all of them, in one atomic step; raise
    BudgetExceeded naming the first budget whose spend plus holds has reached its limit.

    Blocking (cache and, on a miss, the database): async callers run it off the event loop."""
    now = now or timezone.now()
    limits = _limits_of(scopes, now)
    hold = Hold(limits, token, max(0, int(estimate_usd * NANO)) if token else 0)
    if not limits:
        return hold
    lines = hold.lines
    for _ in range(len(limits) + 3):  # seed each missing counter (again if evicted meanwhile)
        verdict = store().reserve(lines, token, hold.amount_nano, _now_ms(), max(1, int(ttl_s)))
        if verdict.missing_at is not None:
            _seed(limits[verdict.missing_at], now)
            continue
        if verdict.refused_at is None:
            return hold
        limit = limits[verdict.refused_at]
        spent, held = Decimal(verdict.spent_nano) / NANO, Decimal(verdict.held_nano) / NANO
        if spent >= limit.limit:
            retry = int((period_end(limit.period, now) - now).total_seconds()) + 1
        else:
            retry = HELD_RETRY_S
        raise BudgetExceeded(limit.name, limit.limit, spent, retry, held=held)
    raise RuntimeError("the budget counters could not be seeded in the cache")


def budget_settle(hold: Hold, cost_usd: Decimal) -> None:
    """Release the request's hold and charge what it really cost (the first call only; blocking)."""
    if hold.settled:
        return
    hold.settled = True
    cost = max(0, int(cost_usd * NANO)) if cost_usd else 0
    if hold.limits and (hold.amount_nano or cost):
        store().settle(hold.lines, hold.token if hold.amount_nano else "", cost)


def budget_check(*, scopes: tuple[BudgetScope, ...], now: dt.datetime | None = None) -> None:
    """Raise BudgetExceeded naming the first budget already spent (holds of requests in flight
    counted); holds nothing. Blocking, like budget_reserve."""
    budget_reserve(scopes=scopes, token="", now=now)


def budget_held(*, scopes: tuple[BudgetScope, ...], now: dt.datetime | None = None) -> dict[str, Decimal]:
    """What requests in flight hold now, per limit ("key daily", ...; blocking)."""
    limits = _limits_of(scopes, now or timezone.now())
    now_ms = _now_ms()
    return {limit.name: Decimal(store().held(limit.line, now_ms)) / NANO for limit in limits}


def budget_spent(*, scopes: tuple[BudgetScope, ...], now: dt.datetime | None = None) -> dict[str, Decimal]:
    """What is charged so far, per limit ("key daily", ...): the counters, seeded on a miss."""
    now = now or timezone.now()
    spent = {}
    for limit in _limits_of(scopes, now):
        value = cache.get(limit.line.spend_key)
        if value is None:
            _seed(limit, now)
            value = cache.get(limit.line.spend_key, 0)
        spent[limit.name] = Decimal(int(value)) / NANO
    return spent


def budget_usage(
    *, kind: str, ident: str, daily: Decimal | None, monthly: Decimal | None, now: dt.datetime | None = None
) -> list[tuple[str, Decimal, Decimal]]:
    """(period, limit, spent) for each limit of one chain (`ident`: its id) or gateway key (its
    prefix), spend read as budgets read it (blocking): what alerts compare with their limits."""
    now = now or timezone.now()
    scope = BudgetScope(kind, ident, daily, monthly)
    spent = budget_spent(scopes=(scope,), now=now)
    return [(limit.period, limit.limit, spent[limit.name]) for limit in _limits_of((scope,), now)]


def _json_chars(value) -> int:
    return len(json.dumps(value, default=str, separators=(",", ":"))) if value else 0


def request_tokens(messages: tuple[Message, ...], params: ChatParams) -> Usage:
    """The most tokens the request should use (see above): what budgets hold and the
    cheapest_first strategy prices each step with."""
    chars = _json_chars(params.tools) + _json_chars(params.response_format)
    images = 0
    for message in messages:
        chars += len(message.content) + sum(len(c.name) + len(c.arguments) for c in message.tool_calls)
        images += sum(1 for part in message.parts if isinstance(part, ImagePart))
    prompt = -(-chars // CHARS_PER_TOKEN) + MESSAGE_TOKENS * len(messages) + IMAGE_TOKENS * images
    output = params.max_tokens or settings.RANA_BUDGET_DEFAULT_OUTPUT_TOKENS
    return Usage(input_tokens=prompt, output_tokens=output)


def budget_estimate(plan: ChainPlan, messages: tuple[Message, ...], params: ChatParams) -> Decimal:
    """The most the request should cost, priced with the first step's price (see above)."""
    price = plan.steps[0].price if plan.steps else None
    if price is None:
        return Decimal(0)
    cost, _unpriced = attempt_cost(request_tokens(messages, params), price)
    return cost or Decimal(0)
