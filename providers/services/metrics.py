"""Prometheus series for /metrics (RANA_METRICS=1), fed by observe.py; off, nothing is counted.

Several serving workers: prometheus_client's multiprocess mode. rana_site/serve.py points
PROMETHEUS_MULTIPROC_DIR at RANA_METRICS_DIR (emptied when the master starts) for its workers;
each worker writes its counters and histograms to memory-mapped files of its own there, and a
scrape, whichever worker takes it, sums every file. A worker that dies keeps its files (what it
counted still counts); its live gauges are dropped by the next worker to start
(rana_site.serve.metrics_worker_start, prometheus_client's mark_process_dead). Without the variable (one
process: runserver, tests, manage.py) the series live in this process's memory.

Labels are bounded: chain slugs, provider names and models come from the configuration (the
chain's steps), outcomes from fixed lists; no request ids, key prefixes or free text. A guard
still caps the label sets per series (MAX_LABEL_SETS), folding the rest into "other".
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest

from providers.engine.results import NO_CALL_OUTCOMES, AttemptRecord

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MAX_LABEL_SETS = 2000  # per series and process
OTHER = "other"
CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}

LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
LAG_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10)

REGISTRY = CollectorRegistry(auto_describe=True)  # ours only: no process or platform collectors

REQUESTS = Counter(
    "rana_requests", "Requests finished, by chain, source and outcome.",
    ["chain", "source", "outcome"], registry=REGISTRY,
)  # fmt: skip
ATTEMPTS = Counter(
    "rana_attempts", "Attempts (upstream calls, and steps skipped), by provider, model and outcome class.",
    ["provider", "model", "outcome"], registry=REGISTRY,
)  # fmt: skip
FALLBACKS = Counter(
    "rana_fallbacks", "Requests answered by a step other than the first they tried.", ["chain"],
    registry=REGISTRY,
)  # fmt: skip
CACHE_HITS = Counter(
    "rana_cache_hits", "Requests answered from the response cache.", ["chain"], registry=REGISTRY
)
TOKENS = Counter(
    "rana_tokens", "Tokens billed by providers, by provider, model and direction (input, output).",
    ["provider", "model", "direction"], registry=REGISTRY,
)  # fmt: skip
COST = Counter(
    "rana_cost_usd", "What attempts cost, in US dollars, by provider and model.", ["provider", "model"],
    registry=REGISTRY,
)  # fmt: skip
REQUEST_SECONDS = Histogram(
    "rana_request_duration_seconds", "Request latency, from arrival to the answer's end, by chain.",
    ["chain"], buckets=LATENCY_BUCKETS_S, registry=REGISTRY,
)  # fmt: skip
ATTEMPT_SECONDS = Histogram(
    "rana_attempt_duration_seconds", "Upstream call latency, by provider.", ["provider"],
    buckets=LATENCY_BUCKETS_S, registry=REGISTRY,
)  # fmt: skip
TTFT_SECONDS = Histogram(
    "rana_time_to_first_token_seconds", "Time to the first token of streamed answers, by chain and provider.",
    ["chain", "provider"], buckets=LATENCY_BUCKETS_S, registry=REGISTRY,
)  # fmt: skip
LEDGER_LAG = Histogram(
    "rana_ledger_lag_seconds", "How long ledger rows waited between the request and the database commit.",
    buckets=LAG_BUCKETS_S, registry=REGISTRY,
)  # fmt: skip
LEDGER_BACKLOG = Gauge(
    "rana_ledger_backlog_rows", "Journal lines waiting for the database, summed over live workers.",
    registry=REGISTRY, multiprocess_mode="livesum",
)  # fmt: skip

_seen: dict[int, set[tuple[str, ...]]] = {}


def _bounded(series: Any, *labels: str) -> tuple[str, ...]:
    """The label values, or "other" for each once the series has MAX_LABEL_SETS label sets."""
    seen = _seen.setdefault(id(series), set())
    if labels in seen:
        return labels
    if len(seen) >= MAX_LABEL_SETS:
        return tuple(OTHER for _ in labels)
    seen.add(labels)
    return labels


def _labels(series: Any, *values: str) -> Any:
    return series.labels(*_bounded(series, *values))


def attempt_observed(record: AttemptRecord, chain: str) -> None:
    provider, model = record.provider_name, record.model
    _labels(ATTEMPTS, provider, model, str(record.outcome)).inc()
    usage = record.usage
    if usage is not None:
        if usage.input_tokens:
            _labels(TOKENS, provider, model, "input").inc(usage.input_tokens)
        if usage.output_tokens:
            _labels(TOKENS, provider, model, "output").inc(usage.output_tokens)
    if record.cost_usd:
        _labels(COST, provider, model).inc(float(record.cost_usd))
    if record.latency_ms and record.outcome not in NO_CALL_OUTCOMES:
        _labels(ATTEMPT_SECONDS, provider).observe(record.latency_ms / 1000)
    if record.ttft_ms is not None and record.ok:
        _labels(TTFT_SECONDS, chain, provider).observe(record.ttft_ms / 1000)


def completion_observed(values: dict[str, Any]) -> None:
    chain, outcome = values.get("chain_slug") or "", str(values["outcome"])
    _labels(REQUESTS, chain, values.get("source") or "", outcome).inc()
    if values.get("fallback_used"):
        _labels(FALLBACKS, chain).inc()
    if outcome == "cache_hit":
        _labels(CACHE_HITS, chain).inc()
    latency_ms = values.get("latency_ms")
    if latency_ms is not None and outcome != "budget_blocked":
        _labels(REQUEST_SECONDS, chain).observe(latency_ms / 1000)


def ledger_lag_observed(lags_ms: Iterable[float]) -> None:
    for lag in lags_ms:
        LEDGER_LAG.observe(lag / 1000)


def ledger_backlog_observed(rows: int) -> None:
    LEDGER_BACKLOG.set(rows)


class CircuitCollector:
    """rana_circuit_state at scrape time: 0 closed, 1 half-open, 2 open, per configured provider +
    model. `circuits`: (provider name, model, state) rows; the breaker's view from the scraping
    process (every process's, with REDIS_URL)."""

    def __init__(self, circuits: Sequence[tuple[str, str, str]]) -> None:
        self.circuits = circuits

    def collect(self):
        family = GaugeMetricFamily(
            "rana_circuit_state",
            "Circuit breaker state per provider and model: 0 closed, 1 half-open, 2 open.",
            labels=["provider", "model"],
        )
        for provider, model, state in self.circuits:
            family.add_metric([provider, model], CIRCUIT_VALUES.get(state, 0))
        yield family


def metrics_registry(circuits: Sequence[tuple[str, str, str]] = ()) -> CollectorRegistry:
    """The registry a scrape renders: every worker's files in multiprocess mode, else ours."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Ours())
    registry.register(CircuitCollector(circuits))
    return registry


class _Ours:
    def collect(self):
        yield from REGISTRY.collect()


def metrics_text(circuits: Sequence[tuple[str, str, str]] = ()) -> tuple[bytes, str]:
    """The Prometheus text exposition and its content type."""
    return generate_latest(metrics_registry(circuits)), CONTENT_TYPE_LATEST
