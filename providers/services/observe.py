"""The one place requests are observed: metrics, traces and the completion log line.

completions.py calls `attempt_ended` from the engine's on_attempt hook (engine_deps) and
`request_ended` wherever a completion is recorded (answered, failed, cancelled, a cache hit,
a budget refusal); the ledger's writer reports its lag and backlog through `recorder.ledger_lag`
(wired by `observe_start`). Each output is off unless asked for: RANA_METRICS=1 (metrics.py),
the OTEL_* variables (tracing.py), LOG_FORMAT=json (the `rana.completion` log line). Off,
each hook costs a flag test; an error in any of them is logged, never raised into a request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.conf import settings

from providers.engine.results import AttemptRecord, calls_made
from providers.services import tracing

log = logging.getLogger("rana.observe")
completion_log = logging.getLogger("rana.completion")


class _State:
    metrics: bool | None = None  # None: not read from the settings yet
    json_log = False


def _metrics_on() -> bool:
    if _State.metrics is None:
        observe_start()
    return bool(_State.metrics)


def observe_start() -> None:
    """Read the settings; with metrics on, hear the ledger writer's lag and backlog."""
    from providers.services.recorder import ledger_lag

    _State.metrics = bool(settings.RANA_METRICS)
    _State.json_log = settings.LOG_FORMAT == "json"
    if _State.metrics:
        from providers.services import metrics

        ledger_lag.on_lags = metrics.ledger_lag_observed
        ledger_lag.on_backlog = metrics.ledger_backlog_observed
    else:
        ledger_lag.on_lags = ledger_lag.on_backlog = None


def observe_reset() -> None:
    """Read the settings again at the next request (tests)."""
    _State.metrics = None
    tracing.tracing_reset()


def attempt_ended(record: AttemptRecord, chain: str) -> None:
    if not _metrics_on():
        return
    try:
        from providers.services import metrics

        metrics.attempt_observed(record, chain)
    except Exception:
        log.exception("could not count an attempt in the metrics")


def request_ended(
    values: dict[str, Any],
    attempts: Sequence[AttemptRecord],
    *,
    response_model: str | None = None,
    body: dict[str, Any] | None = None,
) -> None:
    """A request ended (`values`: its completion row's values; `body`: its CompletionBody values
    when its chain keeps bodies, the only text a span may carry). A budget refusal is counted
    (each one, whether or not its sampled ledger row is written) but neither traced nor logged."""
    if _metrics_on():
        try:
            from providers.services import metrics

            metrics.completion_observed(values)
        except Exception:
            log.exception("could not count a request in the metrics")
    if values.get("outcome") == "budget_blocked":
        return
    try:
        tracing.request_traced(values, attempts, response_model=response_model, body=body)
    except Exception:
        log.exception("could not trace request %s", values.get("id"))
    if _State.json_log:
        _log_completion(values, attempts)


def _log_completion(values: dict[str, Any], attempts: Sequence[AttemptRecord]) -> None:
    """One line per completion: names, numbers and classes only (no prompt, answer or error text)."""
    answering = next((a for a in reversed(attempts) if a.ok), None)
    fields = {
        "request_id": str(values["id"]),
        "chain": values.get("chain_slug") or "",
        "source": values.get("source") or "",
        "key_prefix": values.get("gateway_key_prefix") or "",
        "outcome": str(values["outcome"]),
        "error_class": values.get("error_class") or "",
        "attempts": calls_made(attempts),
        "fallback": bool(values.get("fallback_used")),
        "provider": answering.provider_name if answering else "",
        "model": values.get("answered_model") or "",
        "latency_ms": values.get("latency_ms"),
        "input_tokens": int(values.get("input_tokens") or 0),
        "output_tokens": int(values.get("output_tokens") or 0),
        "cost_usd": str(values.get("cost_usd") or 0),
        "stream": bool(values.get("stream")),
    }
    completion_log.info("completion", extra={"rana": fields})


def metrics_exposition() -> tuple[bytes, str]:
    """/metrics' body and content type (sync: reads the configured steps). The circuit gauge
    covers every enabled step's provider + model (closed unless the breaker says otherwise)."""
    from providers.models import ChainStep
    from providers.services import metrics
    from providers.services.breaker import get_breaker
    from providers.services.recorder import get_recorder

    _metrics_on()
    backlog = getattr(get_recorder(), "backlog", None)
    if backlog is not None:
        metrics.ledger_backlog_observed(backlog())
    names: dict[int, str] = {}
    circuits: dict[tuple[str, str], str] = {}
    steps = ChainStep.objects.filter(enabled=True, provider__enabled=True).select_related("provider")
    for step in steps:
        names[step.provider_id] = step.provider.name
        circuits.setdefault((step.provider.name, step.model), "closed")
    try:
        states = get_breaker().states()
    except Exception:  # Redis unreachable and no local view: the configured pairs only
        log.exception("could not read the circuit states for /metrics")
        states = []
    for row in states:
        name = names.get(row["provider_id"])
        if name is not None and (name, row["model"]) in circuits:
            circuits[(name, row["model"])] = row["state"]
    rows = [(provider, model, state) for (provider, model), state in sorted(circuits.items())]
    return metrics.metrics_text(rows)
