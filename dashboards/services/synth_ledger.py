"""rana_synth_ledger's service: a realistic synthetic ledger of a given size, then its rollups.

The traffic (synth_requests.Traffic: arrivals, chains, sources, keys, sizes, injected faults,
cache hits, budget blocks) runs through the real fallback engine with simulated providers
(providers.services.simulation.ledger_simulate), so every row follows the engine's rules.
Rows are inserted in time order in large batches.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from django.db import transaction
from django.utils import timezone

from dashboards.rollups.rebuild import RebuildReport, rollups_rebuild
from dashboards.services.bulk_insert import bulk_insert
from dashboards.services.catalogue import BEHAVIOURS, Chain, chains_load, synth_catalogue_ensure
from dashboards.services.synth_requests import Traffic, incidents
from providers.models import Attempt, Completion
from providers.services import ATTEMPT_FIELDS, COMPLETION_FIELDS, SimRequest, ledger_simulate

BATCH = 20_000
_completion_values = itemgetter(*COMPLETION_FIELDS)
_attempt_values = itemgetter(*ATTEMPT_FIELDS)


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


def _simulate(
    requests: Iterable[SimRequest], start: dt.datetime, end: dt.datetime, seed: int, breaker: bool
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    return ledger_simulate(
        requests=requests, behaviours=BEHAVIOURS, incidents=incidents(start, end), seed=seed, breaker=breaker
    )


class _Writer:
    def __init__(self, progress: Callable[[int, int], None] | None, target: int) -> None:
        self.progress, self.target = progress, target
        self.completions = self.attempts = 0
        self.batch_c: list[tuple] = []
        self.batch_a: list[tuple] = []

    def add(self, completion: dict[str, Any], attempts: list[dict[str, Any]]) -> None:
        self.batch_c.append(_completion_values(completion))
        self.batch_a.extend(map(_attempt_values, attempts))
        self.attempts += len(attempts)
        if len(self.batch_c) >= BATCH:
            self.flush()

    def flush(self) -> None:
        with transaction.atomic():
            bulk_insert(Completion, COMPLETION_FIELDS, self.batch_c)
            bulk_insert(Attempt, ATTEMPT_FIELDS, self.batch_a)
        self.completions += len(self.batch_c)
        self.batch_c, self.batch_a = [], []
        if self.progress:
            self.progress(self.attempts, self.target)


class _Paced:
    """The requests, slice of time by slice, each slice sized to land on the target.

    How many attempts a request makes depends on what the engine did so far (incidents,
    open circuits), so each slice's count comes from the running attempts per request.
    """

    def __init__(self, traffic: Traffic, writer: _Writer, slices: int) -> None:
        self.traffic, self.writer, self.slices = traffic, writer, slices
        self.made = 0  # requests handed out

    def __iter__(self) -> Iterator[SimRequest]:
        traffic, writer = self.traffic, self.writer
        span = (traffic.end - traffic.start) / self.slices
        for index in range(self.slices):
            done = writer.completions + len(writer.batch_c)
            per_request = writer.attempts / done if done else 1.1
            expected = writer.attempts + (self.made - done) * per_request  # pending ones too
            share = (writer.target - expected) / (self.slices - index)
            count = max(0, round(share / per_request))
            start = traffic.start + span * index
            self.made += count
            yield from traffic.requests(count, start, start + span)


def _fill(
    writer: _Writer, chains: list[Chain], start: dt.datetime, end: dt.datetime, seed: int, breaker: bool
) -> None:
    """One paced pass over the whole range, then top-ups (anywhere in it) until the size is reached."""
    traffic = Traffic(chains, start, end, seed)
    paced = _Paced(traffic, writer, slices=max(1, min(50, writer.target // 200)))
    for completion, attempts in _simulate(paced, start, end, seed, breaker):
        writer.add(completion, attempts)
    for run in range(1, 1000):
        missing = writer.target - writer.attempts
        if missing <= 0:
            return
        per_request = writer.attempts / max(1, writer.completions + len(writer.batch_c))
        extra = traffic.requests(math.ceil(missing / max(per_request, 0.1) * 1.2) + 1)
        for completion, attempts in _simulate(extra, start, end, seed + run, breaker):
            writer.add(completion, attempts)
            if writer.attempts >= writer.target:
                return


def synth_ledger_generate(
    *,
    attempts: int,
    days: float,
    seed: int = 7,
    end: dt.datetime | None = None,
    catalogue: str = "synth",
    chain_slugs: list[str] | None = None,
    build_rollups: bool = True,
    breaker: bool = True,
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
    began, writer = time.monotonic(), _Writer(progress, attempts)
    _fill(writer, chains, start, end, seed, breaker)
    writer.flush()
    insert_s = time.monotonic() - began
    report = rollups_rebuild(start=start, end=end) if build_rollups else None
    return SynthReport(writer.completions, writer.attempts, start, end, insert_s, report)
