"""One synthetic request: walk a chain the way the fallback engine does, attempt by attempt.

Each attempt's outcome comes from its provider's failure mix, raised during incidents
(outages, 429 storms, slow periods); failures act as in DESIGN.md: retry server errors,
timeouts, connection errors and bad responses; move on at once after rate limits, quota,
auth, context-length errors and open circuits; stop on content filters, invalid requests,
interrupted streams and cancellations.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from dashboards.services.catalogue import Chain, Step

RETRY = frozenset({"server_error", "timeout", "connection_error", "bad_response"})
STOP = frozenset({"content_filter", "invalid_request", "stream_interrupted", "cancelled"})
HTTP_STATUS = {
    "rate_limited": 429,
    "quota_exhausted": 429,
    "server_error": 503,
    "bad_response": 200,
    "auth_error": 401,
    "context_length": 400,
    "content_filter": 400,
    "invalid_request": 400,
}
MESSAGES = {
    "rate_limited": "429 Too Many Requests: rate limit reached for requests per minute (key ••••{k})",
    "quota_exhausted": "429 insufficient_quota: you exceeded your current quota (key ••••{k})",
    "server_error": "503 Service Unavailable: the upstream is overloaded, please retry",
    "timeout": "read timeout after 30.0 s",
    "connection_error": "connection reset by peer",
    "bad_response": "200 OK without choices in the body",
    "auth_error": "401 invalid x-api-key (key ••••{k})",
    "context_length": "400 prompt is too long: 212480 tokens > 200000 maximum",
    "content_filter": "400 output blocked by content filtering policy",
    "invalid_request": "400 unsupported parameter: 'logit_bias'",
    "circuit_open": "circuit open: skipped",
    "stream_interrupted": "stream ended after the first token: connection reset",
    "cancelled": "the caller went away",
}


@dataclass(frozen=True)
class Incident:
    provider_name: str
    start: dt.datetime
    end: dt.datetime
    failure_rate: float
    failure: str
    circuit_share: float = 0.0  # share of attempts the breaker would have skipped


@dataclass(slots=True)
class AttemptRow:
    """Attribute names are the Attempt model's, so the rollup accumulators take it as is."""

    completion_id: uuid.UUID
    started_at: dt.datetime
    chain_id: int
    source: str
    step_position: int
    provider_id: int
    provider_name: str
    provider_kind: str
    model: str
    retry_index: int
    outcome: str
    http_status: int | None
    retry_after_s: float | None
    latency_ms: float
    ttft_ms: float | None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal | None = None
    unpriced: bool = False
    error_message: str = ""
    injected: bool = False


@dataclass(slots=True)
class Usage3:
    input_tokens: int
    output_tokens: int
    cached_tokens: int


@dataclass
class RequestWalker:
    rng: random.Random
    incidents: list[Incident] = field(default_factory=list)
    injected_share: float = 0.25  # of playground requests, which carry injected faults

    def _failure(self, step: Step, when: dt.datetime, injected: bool) -> str | None:
        for incident in self.incidents:
            if incident.provider_name == step.provider_name and incident.start <= when < incident.end:
                if self.rng.random() < incident.circuit_share:
                    return "circuit_open"
                if self.rng.random() < incident.failure_rate:
                    return incident.failure
        rate = step.behaviour.failure_rate + (0.25 if injected else 0.0)
        if self.rng.random() >= rate:
            return None
        names, weights = zip(*step.behaviour.failures, strict=True)
        return self.rng.choices(names, weights)[0]

    def _failure_latency(self, failure: str, step: Step) -> float:
        rng = self.rng
        if failure == "timeout":
            return 30_000 + rng.random() * 400
        if failure == "circuit_open":
            return 0.0
        if failure in ("server_error", "connection_error"):
            return rng.lognormvariate(math.log(600), 0.9)
        if failure in ("bad_response", "stream_interrupted", "cancelled"):
            return rng.lognormvariate(math.log(step.behaviour.latency_ms), 0.5)
        return rng.lognormvariate(math.log(140), 0.4)

    def attempt(self, step: Step, base: dict, when: dt.datetime, retry: int, usage: Usage3) -> AttemptRow:
        """One attempt at `when`; base holds the request's completion_id/chain_id/source/injected."""
        injected = base["injected"] and self.rng.random() < 0.5
        failure = self._failure(step, when, injected)
        stream = base["stream"]
        row = AttemptRow(
            started_at=when,
            step_position=step.position,
            provider_id=step.provider_id,
            provider_name=step.provider_name,
            provider_kind=step.provider_kind,
            model=step.model,
            retry_index=retry,
            outcome=failure or "success",
            http_status=HTTP_STATUS.get(failure) if failure else 200,
            retry_after_s=float(self.rng.randint(1, 20)) if failure == "rate_limited" else None,
            latency_ms=0.0,
            ttft_ms=None,
            completion_id=base["completion_id"],
            chain_id=base["chain_id"],
            source=base["source"],
            injected=injected and failure is not None,
        )
        if failure is None or failure == "stream_interrupted":
            self._usage(row, step, usage, stream, partial=failure is not None)
        else:
            row.latency_ms = round(self._failure_latency(failure, step), 3)
            row.error_message = MESSAGES[failure].format(k=step.provider_name[-2:] + "x9")
        return row

    def _usage(self, row: AttemptRow, step: Step, usage: Usage3, stream: bool, partial: bool) -> None:
        rng = self.rng
        behaviour = step.behaviour
        output = max(1, usage.output_tokens // (4 if partial else 1))
        ttft = rng.lognormvariate(math.log(behaviour.ttft_ms), 0.35)
        row.latency_ms = round(ttft + output * behaviour.latency_ms / 300 * rng.lognormvariate(0, 0.25), 3)
        row.ttft_ms = round(ttft, 3) if stream else None
        row.input_tokens, row.output_tokens, row.cached_tokens = (
            usage.input_tokens,
            output,
            usage.cached_tokens,
        )
        row.cost_usd, row.unpriced = step.cost(usage.input_tokens, output, usage.cached_tokens)
        if partial:
            row.error_message = MESSAGES["stream_interrupted"]

    def usage(self, batch: bool) -> Usage3:
        rng = self.rng
        prompt = int(rng.lognormvariate(math.log(2400 if batch else 900), 0.8)) + 20
        cached = int(prompt * rng.choice((0, 0, 0.5, 0.8)))
        return Usage3(prompt, int(rng.lognormvariate(math.log(320 if batch else 260), 0.6)) + 5, cached)

    def walk(self, chain: Chain, base: dict, start: dt.datetime) -> list[AttemptRow]:
        """Every attempt of one request, in order, until an answer or a stop."""
        usage = self.usage(base["source"] == "batch")
        attempts: list[AttemptRow] = []
        when = start
        for step in chain.steps:
            for retry in range(chain.retries + 1):
                row = self.attempt(step, base, when, retry, usage)
                attempts.append(row)
                when += dt.timedelta(milliseconds=row.latency_ms + self.rng.random() * 40)
                if row.outcome == "success" or row.outcome in STOP:
                    return attempts
                if row.outcome not in RETRY:
                    break
                when += dt.timedelta(milliseconds=self.rng.random() * 500 * 2**retry)
        return attempts
