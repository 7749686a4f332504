"""The live provider status (the /status/ page, its JSON twin and the reliability page's table).

Per provider: last success, last error (masked), recent error rate. Independent of the
page's time range: "recent" is the last 15 minutes, read from the raw ledger (a few thousand
rows at most at a busy site); the last success and error come from the ProviderStatus rows
the rollup upkeep maintains. Injected faults are left out unless the toggle is on.

Per provider + model (`models`): its circuit (providers.selectors.circuit_status: state,
reason, cooldown left, failures, failure rate, the last manual action) and its health
(providers.services.health_recent: score, reasons, calls, latency, time to first token).
Circuits are every worker's with REDIS_URL, this worker's without it (the breaker's state).

Per provider (`probe`): whether its health probes are on, their interval, and the last probe's
time, model, outcome and masked error (providers.selectors.provider_probes).
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Count, Q

from dashboards.models import ProviderStatus
from dashboards.outcomes import NOT_COUNTED_IN_ERROR_RATE, SUCCESS
from dashboards.selectors.reliability import pct
from providers.models import Attempt, Provider
from providers.selectors import circuit_status, provider_probes
from providers.services import ProviderHealth, health_recent, redact

RECENT = dt.timedelta(minutes=15)


def _latest(notes: list[ProviderStatus]) -> dict:
    out = {"last_success_at": None, "last_error_at": None, "last_error_class": "", "last_error_status": None}
    out["last_error_message"] = ""
    for note in notes:
        if note.last_success_at and (
            out["last_success_at"] is None or note.last_success_at > out["last_success_at"]
        ):
            out["last_success_at"] = note.last_success_at
        if note.last_error_at and (out["last_error_at"] is None or note.last_error_at > out["last_error_at"]):
            out["last_error_at"] = note.last_error_at
            out["last_error_class"] = note.last_error_class
            out["last_error_status"] = note.last_error_status
            out["last_error_message"] = redact(note.last_error_message)  # masked once more, to be sure
    return out


def _state(attempts: int, error_rate: float | None) -> str:
    if not attempts:
        return "idle"
    if error_rate is not None and error_rate >= 50:
        return "failing"
    return "degraded" if error_rate is not None and error_rate >= 10 else "healthy"


def _circuits_by_provider(states: list[dict]) -> dict[int, list[dict]]:
    circuits: dict[int, list[dict]] = {}
    for state in states:
        if state["state"] != "closed":
            circuits.setdefault(state["provider_id"], []).append(state)
    return circuits


def _health_fields(health: ProviderHealth | None) -> dict:
    if health is None:
        return {"score": None, "reasons": [], "calls": 0, "success_rate": None, "p50_latency_ms": None,
                "p95_latency_ms": None, "p95_ttft_ms": None}  # fmt: skip
    return {
        "score": health.score,
        "reasons": list(health.reasons),
        "calls": health.calls,
        "success_rate": health.success_rate,
        "p50_latency_ms": health.p50_latency_ms,
        "p95_latency_ms": health.p95_latency_ms,
        "p95_ttft_ms": health.p95_ttft_ms,
    }


def _models_by_provider(states: list[dict]) -> dict[int, list[dict]]:
    """Each provider's models: every circuit a chain step uses or the breaker knows, and every
    model called in the health window, with both."""
    health = health_recent()
    circuits = {(row["provider_id"], row["model"]): row for row in states}
    by_provider: dict[int, list[dict]] = {}
    for key in sorted(set(circuits) | set(health), key=lambda k: (k[0] or 0, k[1])):
        circuit = circuits.get(key, {})
        by_provider.setdefault(key[0], []).append(
            {
                "model": key[1],
                "circuit": circuit.get("state", "closed"),
                "reason": circuit.get("reason", ""),
                "manual": circuit.get("manual", False),
                "cooldown_remaining_s": circuit.get("cooldown_remaining_s", 0.0),
                "consecutive_failures": circuit.get("consecutive_failures", 0),
                "failure_rate": circuit.get("failure_rate"),
                "last_action": circuit.get("last_action"),
                **_health_fields(health.get(key)),
            }
        )
    return by_provider


def provider_status(*, now: dt.datetime, include_injected: bool = False, provider: str = "") -> list[dict]:
    providers = {p.name: p for p in Provider.objects.all()}
    notes = (
        ProviderStatus.objects.all() if include_injected else ProviderStatus.objects.filter(injected=False)
    )
    by_name: dict[str, list[ProviderStatus]] = {}
    for note in notes:
        by_name.setdefault(note.provider_name, []).append(note)
    recent = Attempt.objects.filter(started_at__gte=now - RECENT, started_at__lt=now)
    if not include_injected:
        recent = recent.filter(injected=False)
    counted = ~Q(outcome__in=NOT_COUNTED_IN_ERROR_RATE)
    recent_counts = {
        row["provider_name"]: row
        for row in recent.order_by()
        .values("provider_name")
        .annotate(n=Count("id", filter=counted), errors=Count("id", filter=counted & ~Q(outcome=SUCCESS)))
    }
    states = circuit_status()  # one read of the breaker (a Redis round trip when shared)
    circuits = _circuits_by_provider(states)
    models = _models_by_provider(states)
    probes = provider_probes()
    rows = []
    for name in sorted(set(providers) | set(by_name)):
        if provider and name != provider:
            continue
        counts = recent_counts.get(name, {"n": 0, "errors": 0})
        rate = pct(counts["errors"], counts["n"])
        known = providers.get(name)
        rows.append(
            {
                "name": name,
                "kind": known.get_kind_display() if known else "",
                "enabled": known.enabled if known else None,
                **_latest(by_name.get(name, [])),
                "recent_attempts": counts["n"],
                "recent_errors": counts["errors"],
                "recent_error_rate": rate,
                "state": _state(counts["n"], rate),
                "circuits": circuits.get(known.pk, []) if known else [],
                "provider_id": known.pk if known else None,
                "models": models.get(known.pk, []) if known else [],
                "probe": probes.get(known.pk) if known else None,
            }
        )
    return rows
