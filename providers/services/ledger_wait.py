"""Wait until a request's ledger rows are in the database, from whichever process wrote them."""

from __future__ import annotations

import time
import uuid

from providers.engine.results import NO_CALL_OUTCOMES
from providers.models import Attempt, Completion
from providers.services.recorder import ledger_flush

POLL_S = 0.02


def _complete(request_id: uuid.UUID) -> bool:
    completion = Completion.objects.filter(pk=request_id).only("attempt_count").first()
    if completion is None:
        return False
    called = Attempt.objects.filter(completion_id=request_id).exclude(outcome__in=NO_CALL_OUTCOMES).count()
    return called >= completion.attempt_count


def ledger_await(*, request_id: uuid.UUID, timeout_s: float = 2.0) -> bool:
    """Write this process's pending rows, then wait (polling the database) for the rows that
    another worker's write-behind buffer still holds. True once the completion and all its
    attempts are stored; False at the timeout (a page then says they are still being written).
    Blocking: call it off the event loop."""
    deadline = time.monotonic() + timeout_s
    ledger_flush(timeout_s=timeout_s)
    while not _complete(request_id):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True
