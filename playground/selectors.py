"""Read side of the playground: runs and conversations.

A run's attempt timeline is the hub's (providers.selectors.completion_timeline, by the run's
request id): the same ledger rows the API's completion page, the admin and every dashboard read.
"""

from __future__ import annotations

import uuid

from django.db.models import OuterRef, Subquery

from providers.models import Completion
from providers.selectors import chain_usable_steps

from .models import PlaygroundRun

MAX_THREAD = 50
HISTORY_SIZE = 50


def chain_steps(slug: str | None) -> list[tuple[int, str]]:
    """(position, label) of the steps a chain will try: enabled steps of enabled providers."""
    if not slug:
        return []
    steps = next(iter(chain_usable_steps(slug=slug).values()), [])
    return [(s.position, f"Step {n} · {s.provider.name} / {s.model}") for n, s in enumerate(steps, start=1)]


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
    """The user's latest runs, each with its recorded cost (cost_usd, unpriced) from the ledger.

    Light: the conversation (which may carry images as data: URLs), the answer and the tool
    calls are not loaded; `title` says what each run asked."""
    ledger = Completion.objects.filter(pk=OuterRef("completion_id"))
    heavy = ("messages", "params", "answer", "tool_calls", "error_message")
    runs = (
        PlaygroundRun.objects.filter(user_id=user_id)
        .defer(*heavy)
        .annotate(
            cost_usd=Subquery(ledger.values("cost_usd")[:1]), unpriced=Subquery(ledger.values("unpriced")[:1])
        )
    )
    return list(runs.order_by("-created_at")[:limit])


def compare_runs(*, group: uuid.UUID, user_id: int) -> list[PlaygroundRun]:
    return list(PlaygroundRun.objects.filter(compare_group=group, user_id=user_id).order_by("created_at"))
