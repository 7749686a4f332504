"""Read side of the playground: runs, conversations, and the attempt timeline of a run.

The timeline has one source: the ledger rows (providers.Completion and its Attempts, by
the run's request id), the same rows every dashboard reads. The write-behind recorder is
flushed first, so a run that just ended is complete in the timeline.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import OuterRef, Subquery

from providers.models import Attempt, ChainStep, Completion
from providers.services.recorder import ledger_flush

from .models import PlaygroundRun

MAX_THREAD = 50
HISTORY_SIZE = 50


@dataclass(slots=True)
class Timeline:
    completion: Completion | None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def cost_usd(self) -> Decimal | None:
        return self.completion.cost_usd if self.completion else None

    @property
    def injected(self) -> bool:
        return any(a.injected for a in self.attempts)

    @property
    def answered_attempt(self) -> Attempt | None:
        return next((a for a in reversed(self.attempts) if a.outcome == "success"), None)


def chain_steps(slug: str | None) -> list[tuple[int, str]]:
    """(position, label) of the steps a chain will try: enabled steps of enabled providers."""
    if not slug:
        return []
    steps = ChainStep.objects.filter(chain__slug=slug, enabled=True, provider__enabled=True)
    return [
        (s.position, f"Step {n} · {s.provider.name} / {s.model}")
        for n, s in enumerate(steps.select_related("provider").order_by("position", "id"), start=1)
    ]


def run_get(*, run_id: uuid.UUID, user_id: int) -> PlaygroundRun | None:
    """The user's run (only the owner sees it)."""
    return PlaygroundRun.objects.filter(pk=run_id, user_id=user_id).first()


def run_thread(run: PlaygroundRun) -> list[PlaygroundRun]:
    """The conversation ending at `run`: its earlier turns first."""
    turns = [run]
    seen = {run.pk}
    while turns[0].parent_id and len(turns) < MAX_THREAD and turns[0].parent_id not in seen:
        parent = PlaygroundRun.objects.filter(pk=turns[0].parent_id, user_id=run.user_id).first()
        if parent is None:
            break
        seen.add(parent.pk)
        turns.insert(0, parent)
    return turns


def runs_recent(*, user_id: int, limit: int = HISTORY_SIZE) -> list[PlaygroundRun]:
    """The user's latest runs, each with its recorded cost (cost_usd, unpriced) from the ledger."""
    ledger = Completion.objects.filter(pk=OuterRef("completion_id"))
    runs = PlaygroundRun.objects.filter(user_id=user_id).annotate(
        cost_usd=Subquery(ledger.values("cost_usd")[:1]), unpriced=Subquery(ledger.values("unpriced")[:1])
    )
    return list(runs.order_by("-created_at")[:limit])


def compare_runs(*, group: uuid.UUID, user_id: int) -> list[PlaygroundRun]:
    return list(PlaygroundRun.objects.filter(compare_group=group, user_id=user_id).order_by("created_at"))


def run_timeline(run: PlaygroundRun) -> Timeline | None:
    """The recorded completion and attempts of a finished run (None before it reached the ledger)."""
    if run.completion_id is None:
        return None
    ledger_flush(timeout_s=2.0)
    completion = Completion.objects.filter(pk=run.completion_id).first()
    attempts = list(Attempt.objects.filter(completion_id=run.completion_id).order_by("started_at", "id"))
    return Timeline(completion, attempts)
