"""Health per provider and model: a 0-100 score, and its reasons in words, from recent calls.

Read from the ledger's Attempt rows of the last WINDOW_S, real calls only: skipped steps
(circuit_open, capability_skipped), cancelled calls, injected faults and answers that judge
the request rather than the provider (invalid_request, context_length, content_filter) are
left out; every other failure is an error. The score starts at 100 and loses

* the error rate in points (12 % of calls failed: 12 points),
* LATENCY_POINTS_PER_S points per second the p95 latency of successful calls is over
  LATENCY_OK_S (at most LATENCY_MAX_POINTS),
* TTFT_POINTS_PER_S points per second the p95 time to first token of successful streams is
  over TTFT_OK_S (at most TTFT_MAX_POINTS),

rounded half up, never below 0. Percentiles are nearest-rank over the latest
SAMPLES_PER_MODEL successful calls of each provider and model. Three queries in all (the
counts, the samples, the last error of each), read at most once every CACHE_S per process by
health_recent(), which the routing strategies call on the request path.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.db.models import Count, F, Max, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from providers.engine.results import NO_CALL_OUTCOMES, SUCCESS
from providers.engine.types import FailureClass
from providers.models import Attempt
from providers.redaction import redact

WINDOW_S = 15 * 60
CACHE_S = 5.0
SAMPLES_PER_MODEL = 500
# One vocabulary of what an attempt says of its provider (health here, the alert rules too):
NOT_A_CALL = NO_CALL_OUTCOMES | {FailureClass.CANCELLED.value}  # skipped, or cut off by the caller
JUDGES_THE_REQUEST = frozenset({"invalid_request", "context_length", "content_filter"})  # not its errors
NOT_COUNTED = NOT_A_CALL | JUDGES_THE_REQUEST
PROVIDER_FAILURES = frozenset(c.value for c in FailureClass) - NOT_COUNTED  # the provider's own
LATENCY_OK_S, LATENCY_POINTS_PER_S, LATENCY_MAX_POINTS = 2.0, 10, 30
TTFT_OK_S, TTFT_POINTS_PER_S, TTFT_MAX_POINTS = 1.0, 10, 20
ERROR_CHARS = 300

StepKey = tuple[int | None, str]  # (provider id, model)


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    provider_id: int | None
    provider_name: str
    model: str
    score: int  # 0-100
    reasons: tuple[str, ...]  # in words: "error rate 12 % over 15 min", "p95 latency 2.4 s"
    calls: int
    success_rate: float  # 0-1
    p50_latency_ms: float | None  # of successful calls; None: none in the window
    p95_latency_ms: float | None
    p95_ttft_ms: float | None  # of successful streams
    last_success_at: dt.datetime | None
    last_error_at: dt.datetime | None
    last_error: str  # the last error's outcome and message, keys masked; "" when none


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.1f} s"


def _percent(rate: float) -> str:
    return f"{rate * 100:.1f}".removesuffix(".0")


def health_score(
    *, calls: int, errors: int, p95_latency_ms: float | None, p95_ttft_ms: float | None, window_s: int
) -> tuple[int, tuple[str, ...]]:
    """The score and its reasons (the module's docstring has the rule)."""
    error_rate = errors / calls if calls else 0.0
    reasons = [f"error rate {_percent(error_rate)} % over {window_s // 60} min"]
    lost = 100 * error_rate
    if p95_latency_ms is not None and p95_latency_ms > LATENCY_OK_S * 1000:
        lost += min(LATENCY_MAX_POINTS, LATENCY_POINTS_PER_S * (p95_latency_ms / 1000 - LATENCY_OK_S))
        reasons.append(f"p95 latency {_seconds(p95_latency_ms)}")
    if p95_ttft_ms is not None and p95_ttft_ms > TTFT_OK_S * 1000:
        lost += min(TTFT_MAX_POINTS, TTFT_POINTS_PER_S * (p95_ttft_ms / 1000 - TTFT_OK_S))
        reasons.append(f"p95 time to first token {_seconds(p95_ttft_ms)}")
    return max(0, math.floor(100 - lost + 0.5)), tuple(reasons)


def _calls(since: dt.datetime) -> QuerySet[Attempt]:
    return (
        Attempt.objects.filter(started_at__gte=since, injected=False)
        .exclude(outcome__in=NOT_COUNTED)
        .order_by()
    )


def _latest(rows: QuerySet[Attempt], n: int) -> QuerySet[Attempt]:
    """The latest n rows of each provider and model."""
    rank = Window(
        RowNumber(),
        partition_by=[F("provider_id"), F("model")],
        order_by=[F("started_at").desc(), F("id").desc()],
    )
    return rows.annotate(rank=rank).filter(rank__lte=n)


def provider_health(*, window_s: int = WINDOW_S, now: dt.datetime | None = None) -> list[ProviderHealth]:
    """Every provider and model called in the window, by provider name and model. Three queries."""
    calls = _calls((now or timezone.now()) - dt.timedelta(seconds=window_s))
    counts = calls.values("provider_id", "model").annotate(
        name=Max("provider_name"),  # a provider renamed within the window: one of its names
        calls=Count("id"),
        successes=Count("id", filter=Q(outcome=SUCCESS)),
        last_success_at=Max("started_at", filter=Q(outcome=SUCCESS)),
        last_error_at=Max("started_at", filter=~Q(outcome=SUCCESS)),
    )
    latency: dict[StepKey, list[float]] = defaultdict(list)
    ttft: dict[StepKey, list[float]] = defaultdict(list)
    samples = _latest(calls.filter(outcome=SUCCESS), SAMPLES_PER_MODEL)
    for provider_id, model, latency_ms, ttft_ms in samples.values_list(
        "provider_id", "model", "latency_ms", "ttft_ms"
    ):
        latency[provider_id, model].append(latency_ms)
        if ttft_ms is not None:
            ttft[provider_id, model].append(ttft_ms)
    errors = {
        (provider_id, model): f"{outcome}: {redact(message)[:ERROR_CHARS]}" if message else outcome
        for provider_id, model, outcome, message in _latest(calls.exclude(outcome=SUCCESS), 1).values_list(
            "provider_id", "model", "outcome", "error_message"
        )
    }
    found = []
    for row in counts:
        key = (row["provider_id"], row["model"])
        p95_latency, p95_ttft = percentile(latency[key], 0.95), percentile(ttft[key], 0.95)
        score, reasons = health_score(
            calls=row["calls"],
            errors=row["calls"] - row["successes"],
            p95_latency_ms=p95_latency,
            p95_ttft_ms=p95_ttft,
            window_s=window_s,
        )
        found.append(
            ProviderHealth(
                provider_id=row["provider_id"],
                provider_name=row["name"],
                model=row["model"],
                score=score,
                reasons=reasons,
                calls=row["calls"],
                success_rate=row["successes"] / row["calls"],
                p50_latency_ms=percentile(latency[key], 0.5),
                p95_latency_ms=p95_latency,
                p95_ttft_ms=p95_ttft,
                last_success_at=row["last_success_at"],
                last_error_at=row["last_error_at"],
                last_error=errors.get(key, ""),
            )
        )
    return sorted(found, key=lambda h: (h.provider_name, h.model))


_lock = threading.Lock()
_recent: dict = {"at": -math.inf, "health": {}}


def _fresh() -> bool:
    return time.monotonic() - _recent["at"] < CACHE_S


def health_recent() -> dict[StepKey, ProviderHealth]:
    """provider_health() by (provider id, model), read at most once every CACHE_S per process.
    Blocking on a miss: async callers use ahealth_recent()."""
    with _lock:
        if not _fresh():
            _recent["health"] = {(h.provider_id, h.model): h for h in provider_health()}
            _recent["at"] = time.monotonic()
        return _recent["health"]


def _health_recent_off_loop() -> dict[StepKey, ProviderHealth]:
    close_old_connections()  # a worker thread of its own: drop a connection past its age
    return health_recent()


async def ahealth_recent() -> dict[StepKey, ProviderHealth]:
    """health_recent() for the event loop: the cached figures, or one read on a worker thread."""
    if _fresh():
        return _recent["health"]
    return await sync_to_async(_health_recent_off_loop, thread_sensitive=False)()


def health_forget() -> None:
    """Drop this process's cached figures (the next read goes to the ledger)."""
    with _lock:
        _recent["at"] = -math.inf
        _recent["health"] = {}
