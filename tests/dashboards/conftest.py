"""Known ledgers for the dashboard tests: requests built attempt by attempt, recorded through
the real writer (providers.services.recorder.write_rows), so the rollups are kept up to date
by the same ledger_rows_written receiver as in production."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from dashboards.selectors.filters import Filters
from providers.models import Attempt, ChainStep, Completion, FallbackChain, Provider, ProviderKind
from providers.models.ledger import new_request_id
from providers.services.recorder import write_rows

UTC = dt.UTC
T0 = dt.datetime(2025, 3, 10, 12, 0, tzinfo=UTC)  # a Monday, noon UTC


def filters(start: dt.datetime, end: dt.datetime, tz: str = "UTC", **kwargs: Any) -> Filters:
    return Filters(start=start, end=end, tz=zoneinfo.ZoneInfo(tz), range_key="custom", **kwargs)


def attempt(**fields: Any) -> dict:
    """One attempt's fields (defaults: a successful 100 ms call to p1/m1 at step 0)."""
    return {"provider": "p1", "model": "m1", "step": 0, "outcome": "success", "latency_ms": 100.0} | fields


def _attempt_row(spec: dict, request_id, when: dt.datetime, chain, source: str, provider) -> Attempt:
    return Attempt(
        completion_id=request_id,
        started_at=spec.get("at", when),
        chain_id=chain.id if chain else None,
        source=source,
        step_position=spec["step"],
        provider_id=provider.id if provider else None,
        provider_name=spec["provider"],
        provider_kind=spec.get("kind", "simulated"),
        model=spec["model"],
        retry_index=spec.get("retry", 0),
        outcome=spec["outcome"],
        http_status=spec.get("http_status"),
        latency_ms=spec["latency_ms"],
        ttft_ms=spec.get("ttft_ms"),
        input_tokens=spec.get("input_tokens", 0),
        output_tokens=spec.get("output_tokens", 0),
        cached_tokens=spec.get("cached_tokens", 0),
        cost_usd=spec.get("cost_usd"),
        unpriced=spec.get("unpriced", False),
        error_message=spec.get("error_message", ""),
        injected=spec.get("injected", False),
    )


def _completion_row(request_id, at: dt.datetime, tried: list[Attempt], answered, **fields: Any) -> Completion:
    """The completion's totals derived from its attempts, as the service does."""
    success = next((a for a in tried if a.outcome == "success"), None)
    costs = [a.cost_usd for a in tried if a.cost_usd is not None]
    return Completion(
        id=request_id,
        created_at=at,
        outcome=fields.pop("outcome") or ("success" if success else "failed"),
        answered_provider_id=answered.id if answered else None,
        answered_model=success.model if success else "",
        answered_step=success.step_position if success else None,
        fallback_used=bool(success and success.step_position != tried[0].step_position),
        attempt_count=sum(1 for a in tried if a.outcome != "circuit_open"),
        latency_ms=sum(a.latency_ms for a in tried),
        input_tokens=sum(a.input_tokens for a in tried),
        output_tokens=sum(a.output_tokens for a in tried),
        cached_tokens=sum(a.cached_tokens for a in tried),
        cost_usd=sum(costs, Decimal(0)),
        unpriced=any(a.unpriced for a in tried),
        injected=any(a.injected for a in tried),
        **fields,
    )


def request_rows(
    *,
    at: dt.datetime,
    attempts: list[dict],
    chain: FallbackChain | None = None,
    source: str = "api",
    key: str = "",
    outcome: str | None = None,
    providers: dict[str, Provider] | None = None,
) -> list[Completion | Attempt]:
    """A Completion and its Attempts (one every latency_ms from `at`, unless given "at")."""
    request_id, providers, when, tried = new_request_id(), providers or {}, at, []
    for spec in attempts:
        tried.append(_attempt_row(spec, request_id, when, chain, source, providers.get(spec["provider"])))
        when += dt.timedelta(milliseconds=spec["latency_ms"])
    success = next((a for a in tried if a.outcome == "success"), None)
    answered = providers.get(success.provider_name) if success else None
    completion = _completion_row(
        request_id, at, tried, answered, outcome=outcome, chain_id=chain.id if chain else None,
        chain_slug=chain.slug if chain else "", source=source, gateway_key_prefix=key,
    )  # fmt: skip
    return [completion, *tried]


@pytest.fixture
def record(django_capture_on_commit_callbacks) -> Callable[..., None]:
    """Write ledger rows as the recorder does, running the after-commit rollup upkeep."""

    def _record(*batches: list[Completion | Attempt]) -> None:
        for rows in batches:
            with django_capture_on_commit_callbacks(execute=True):
                write_rows(rows)

    return _record


@pytest.fixture
def two_providers(db) -> dict[str, Provider]:
    return {
        "p1": Provider.objects.create(name="p1", kind=ProviderKind.SIMULATED),
        "p2": Provider.objects.create(name="p2", kind=ProviderKind.SIMULATED),
    }


@pytest.fixture
def chain(two_providers) -> FallbackChain:
    chain = FallbackChain.objects.create(name="Main", slug="main")
    ChainStep.objects.create(chain=chain, position=0, provider=two_providers["p1"], model="m1")
    ChainStep.objects.create(chain=chain, position=1, provider=two_providers["p2"], model="m2")
    return chain
