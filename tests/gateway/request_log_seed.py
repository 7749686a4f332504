"""A small known ledger for the request log tests."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from providers.models import Attempt, Completion, FallbackChain, Provider

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)


def completion(at: dt.datetime, n: int, **fields: Any) -> Completion:
    """Completion number `n` (its id sorts by n) created at `at`."""
    values = dict(
        id=uuid.UUID(int=n),
        created_at=at,
        source="api",
        outcome="success",
        latency_ms=100.0,
        cost_usd=Decimal("0.001"),
        attempt_count=1,
    )
    return Completion.objects.create(**(values | fields))


def attempt(
    c: Completion, provider: str, *, position: int = 0, outcome: str = "success", error: str = ""
) -> None:
    Attempt.objects.create(
        completion=c,
        started_at=c.created_at,
        chain_id=c.chain_id,
        source=c.source,
        step_position=position,
        provider_name=provider,
        provider_kind="openai_compatible",
        model="m1" if position == 0 else "m2",
        outcome=outcome,
        latency_ms=10.0,
        error_message=error,
    )


def seed() -> dict[str, Any]:
    """Ten completions on two chains; 4 share one timestamp; one failed, one fell back."""
    alpha = FallbackChain.objects.create(name="Alpha", slug="alpha")
    beta = FallbackChain.objects.create(name="Beta", slug="beta")
    Provider.objects.create(name="primary", kind="simulated")
    rows = []
    for n in range(10):
        at = T0 if n < 4 else T0 + dt.timedelta(minutes=n)  # 0..3 share T0
        chain = alpha if n % 2 == 0 else beta
        rows.append(
            completion(at, n + 1, chain=chain, chain_slug=chain.slug, gateway_key_prefix=f"rana_k{n % 3}")
        )
        attempt(rows[-1], "primary")
    failed = rows[5]
    Completion.objects.filter(pk=failed.pk).update(
        outcome="failed", cost_usd=Decimal("0.5"), latency_ms=900.0
    )
    Attempt.objects.filter(completion=failed).update(
        outcome="rate_limited", error_message="HTTP 429: slow down please"
    )
    fell_back = rows[6]
    Completion.objects.filter(pk=fell_back.pk).update(fallback_used=True)
    attempt(fell_back, "backup", position=1)
    Attempt.objects.filter(completion=fell_back, step_position=0).update(
        outcome="server_error", error_message="boom 500"
    )
    return {"rows": rows, "alpha": alpha, "beta": beta, "failed": failed, "fell_back": fell_back}
