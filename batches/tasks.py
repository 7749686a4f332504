"""The batch run as a Celery task: thin, a batch id in, one service call (batches.services.runner).

A whole batch runs in one task (its rows `concurrency` at a time in one event loop); acks_late
(on for every task) redelivers it when the worker dies, and the run then skips every finished
row. A busy or unreachable database retries it later, with the same effect.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import DatabaseError

from batches.services import batch_run


@shared_task(
    ignore_result=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=10,
    retry_backoff_max=300,
    max_retries=10,
    soft_time_limit=6 * 3600,
    time_limit=6 * 3600 + 300,
)
def batch_run_task(batch_id: str) -> dict[str, Any]:
    return batch_run(batch_id=batch_id)
