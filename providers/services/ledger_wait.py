"""Wait until a request's ledger rows are in the database, from whichever process wrote them."""

from __future__ import annotations

import time
import uuid

from providers.selectors import CompletionTimeline, completion_timeline
from providers.services.recorder import ledger_flush

POLL_S = 0.02


def _written(timeline: CompletionTimeline | None) -> bool:
    return timeline is not None and not timeline.writing


def completion_timeline_await(*, request_id: uuid.UUID, timeout_s: float = 2.0) -> CompletionTimeline | None:
    """The request's timeline once its completion and every attempt are stored: read at once
    when they are; else this process's pending rows are written, then the database is polled
    for the rows another worker's write-behind buffer still holds. At the timeout, the timeline
    as it stands (`writing` tells a page to say so; None when nothing is stored yet).
    Blocking: call it off the event loop."""
    timeline = completion_timeline(request_id=request_id)
    if _written(timeline):
        return timeline
    deadline = time.monotonic() + timeout_s
    ledger_flush(timeout_s=timeout_s)
    while not _written(timeline := completion_timeline(request_id=request_id)):
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    return timeline


def ledger_await(*, request_id: uuid.UUID, timeout_s: float = 2.0) -> bool:
    """True once the completion and all its attempts are stored (False at the timeout)."""
    return _written(completion_timeline_await(request_id=request_id, timeout_s=timeout_s))
