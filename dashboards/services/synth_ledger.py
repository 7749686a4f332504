"""rana_synth_ledger's service: a realistic synthetic ledger of a given size, then its rollups.

Requests arrive over [end - days, end) with a day/night rhythm, spread over the chains by
weight, from the API (with a handful of gateway keys), batch jobs and the playground (a share
with injected faults). Each request walks its chain (synth_requests.RequestWalker); a few are
cache hits or blocked by a budget. Rows are inserted in time order in large batches.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from dashboards.rollups.rebuild import RebuildReport, rollups_rebuild
from dashboards.services.bulk_insert import bulk_insert
from dashboards.services.catalogue import Chain, chains_load, synth_catalogue_ensure
from dashboards.services.synth_requests import AttemptRow, Incident, RequestWalker
from providers.models import Attempt, Completion

ATTEMPT_FIELDS = [f.name for f in fields(AttemptRow)]
COMPLETION_FIELDS = [
    "id", "created_at", "finished_at", "chain_id", "chain_slug", "source", "gateway_key_prefix",
    "stream", "outcome", "error_class", "error_message", "answered_provider_id", "answered_model",
    "answered_step", "fallback_used", "attempt_count", "latency_ms", "ttft_ms", "input_tokens",
    "output_tokens", "cached_tokens", "reasoning_tokens", "cost_usd", "unpriced", "injected",
]  # fmt: skip
KEYS = (("rk_7Hq2", 40), ("rk_Lm9x", 25), ("rk_pT4e", 15), ("rk_Zc81", 12), ("rk_b3Vw", 8))
BATCH = 20_000


@dataclass
class SynthReport:
    completions: int
    attempts: int
    start: dt.datetime
    end: dt.datetime
    insert_s: float
    rollups: RebuildReport | None

    def __str__(self) -> str:
        return (
            f"{self.completions:,} completions and {self.attempts:,} attempts from "
            f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC in {self.insert_s:.1f} s; "
            f"{self.rollups or 'rollups not built'}"
        )


def _incidents(start: dt.datetime, end: dt.datetime) -> list[Incident]:
    span, minute = end - start, dt.timedelta(minutes=1)
    at = lambda share: start + span * share  # noqa: E731
    return [
        Incident("openai", at(0.55), at(0.55) + 90 * minute, 0.7, "server_error", circuit_share=0.3),
        Incident("anthropic", at(0.3), at(0.3) + 240 * minute, 0.5, "rate_limited"),
        Incident("gemini", at(0.8), at(0.8) + 60 * minute, 0.4, "timeout"),
        Incident("anthropic", end - 45 * minute, end, 0.35, "rate_limited"),
    ]


def _request_id(rng: random.Random, when: dt.datetime) -> uuid.UUID:
    """A UUIDv7 for a moment (as providers.models.ledger.new_request_id makes them)."""
    ms = int(when.timestamp() * 1000)
    rand = rng.getrandbits(74)
    value = (
        (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62 | rand & ((1 << 62) - 1)
    )
    return uuid.UUID(int=value)


class Synthesiser:
    def __init__(self, chains: list[Chain], start: dt.datetime, end: dt.datetime, seed: int) -> None:
        self.rng = random.Random(seed)
        self.chains, self.weights = chains, [c.weight for c in chains]
        self.start, self.end = start, end
        self.walker = RequestWalker(self.rng, _incidents(start, end))

    def times(self, count: int) -> list[dt.datetime]:
        """Sorted arrival times with a day/night rhythm (busiest mid-afternoon UTC)."""
        span = (self.end - self.start).total_seconds()
        rng, out = self.rng, []
        while len(out) < count:
            moment = self.start + dt.timedelta(seconds=rng.random() * span)
            hour = moment.hour + moment.minute / 60
            if rng.random() * 1.6 < 1 + 0.6 * math.sin((hour - 9) / 24 * 2 * math.pi):
                out.append(moment)
        return sorted(out)

    def _base(self, chain: Chain, when: dt.datetime) -> dict:
        rng = self.rng
        if chain.slug == "batch":
            source = "batch" if rng.random() < 0.85 else "api"
        else:
            source = rng.choices(("api", "playground", "batch"), (78, 12, 10))[0]
        key = "" if source == "playground" else rng.choices(*zip(*KEYS, strict=True))[0]
        return {
            "completion_id": _request_id(rng, when),
            "chain_id": chain.id,
            "source": source,
            "key": key,
            "stream": source == "playground" or (source == "api" and rng.random() < 0.55),
            "injected": source == "playground" and rng.random() < self.walker.injected_share,
        }

    def request(self, when: dt.datetime) -> tuple[tuple, list[AttemptRow]]:
        chain = self.rng.choices(self.chains, self.weights)[0]
        base = self._base(chain, when)
        roll = self.rng.random()
        if roll < 0.03:
            return _completion(chain, base, when, [], "cache_hit"), []
        if roll < 0.033 and chain.slug in ("support", "batch"):
            return _completion(chain, base, when, [], "budget_blocked"), []
        attempts = self.walker.walk(chain, base, when)
        return _completion(chain, base, when, attempts, None), attempts


def _completion(chain: Chain, base: dict, when: dt.datetime, attempts: list[AttemptRow], outcome: str | None):
    success = next((a for a in attempts if a.outcome == "success"), None)
    last = attempts[-1] if attempts else None
    if outcome is None:
        outcome = (
            "success"
            if success
            else (last.outcome if last.outcome in ("stream_interrupted", "cancelled") else "failed")
        )
    answered = success or (chain.steps[0] if outcome == "cache_hit" else None)
    priced = [a.cost_usd for a in attempts if a.cost_usd is not None]
    latency = (last.started_at - when).total_seconds() * 1000 + last.latency_ms if last else 4.0
    return (
        base["completion_id"], when, when + dt.timedelta(milliseconds=latency), chain.id, chain.slug,
        base["source"], base["key"], base["stream"], outcome,
        "" if outcome in ("success", "cache_hit") else (last.outcome if last else outcome),
        "" if success or not last else last.error_message,
        answered.provider_id if answered else None, answered.model if answered else "",
        (success.step_position if success else 0) if answered else None,
        bool(success and success.step_position != attempts[0].step_position),
        sum(1 for a in attempts if a.outcome != "circuit_open"), round(latency, 3),
        success.ttft_ms if success else None,
        sum(a.input_tokens for a in attempts), sum(a.output_tokens for a in attempts),
        sum(a.cached_tokens for a in attempts), 0, sum(priced, Decimal(0)),
        any(a.unpriced for a in attempts), any(a.injected for a in attempts),
    )  # fmt: skip


def _write(completions: list[tuple], attempts: list[AttemptRow]) -> None:
    with transaction.atomic():
        bulk_insert(Completion, COMPLETION_FIELDS, completions)
        bulk_insert(Attempt, ATTEMPT_FIELDS, [tuple(getattr(a, n) for n in ATTEMPT_FIELDS) for a in attempts])


def _requests_needed(
    chains: list[Chain], start: dt.datetime, end: dt.datetime, seed: int, target: int
) -> int:
    """How many requests make `target` attempts, from a dry run of 2,000 requests."""
    trial = Synthesiser(chains, start, end, seed + 1)
    made = sum(len(trial.request(start + (end - start) * trial.rng.random())[1]) for _ in range(2000))
    return max(1, round(target * 2000 / max(made, 1)))


class _Writer:
    def __init__(self, progress: Callable[[int, int], None] | None, target: int) -> None:
        self.progress, self.target = progress, target
        self.completions = self.attempts = 0
        self.batch_c: list[tuple] = []
        self.batch_a: list[AttemptRow] = []

    def add(self, completion: tuple, attempts: list[AttemptRow]) -> None:
        self.batch_c.append(completion)
        self.batch_a.extend(attempts)
        self.attempts += len(attempts)
        if len(self.batch_c) >= BATCH:
            self.flush()

    def flush(self) -> None:
        _write(self.batch_c, self.batch_a)
        self.completions += len(self.batch_c)
        self.batch_c, self.batch_a = [], []
        if self.progress:
            self.progress(self.attempts, self.target)


def synth_ledger_generate(
    *,
    attempts: int,
    days: float,
    seed: int = 7,
    end: dt.datetime | None = None,
    catalogue: str = "synth",
    chain_slugs: list[str] | None = None,
    build_rollups: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> SynthReport:
    """Generate about `attempts` attempts over `days` days ending at `end` (default now)."""
    if catalogue == "synth":
        synth_catalogue_ensure()
        chain_slugs = chain_slugs or ["support", "premium", "batch", "local-first"]
    chains = chains_load(chain_slugs)
    if not chains:
        raise ValueError("no chain with an enabled step to simulate")
    end = (end or timezone.now()).astimezone(dt.UTC)
    start = end - dt.timedelta(days=days)
    synth = Synthesiser(chains, start, end, seed)
    began, writer = time.monotonic(), _Writer(progress, attempts)
    for when in synth.times(_requests_needed(chains, start, end, seed, attempts)):
        writer.add(*synth.request(when))
    while writer.attempts < attempts:  # top up: a request count is an estimate
        writer.add(*synth.request(start + (end - start) * synth.rng.random()))
    writer.flush()
    completions, rows = writer.completions, writer.attempts
    insert_s = time.monotonic() - began
    report = rollups_rebuild(start=start, end=end) if build_rollups else None
    return SynthReport(completions, rows, start, end, insert_s, report)
