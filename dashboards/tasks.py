"""Periodic upkeep: rebuild the last few closed hours of rollups, and every hour marked for repair.

The ledger_rows_written receiver keeps rollups current; this repairs what it can miss: a batch
whose rollup add failed even after its retries (its hours were marked for repair by
dashboards.rollups.repair), a process killed between the ledger commit and the rollup upsert,
a completion rewritten after it was first recorded. Only hours that closed at least SETTLE ago
are rebuilt, so increments still arriving for an hour (a request finishing late) do not race
the rebuild; marked hours that have not settled yet wait for a later run.
Scheduled every 10 minutes by Celery beat (a django-celery-beat row made by migration 0002,
editable in the admin) and run by the Celery worker that scripts/run starts; by hand:
rana_rollups.
"""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.utils import timezone

from dashboards.rollups.rebuild import rollups_rebuild, rollups_repair
from dashboards.rollups.timegrid import floor_hour

SETTLE = dt.timedelta(minutes=10)


@shared_task(ignore_result=True, soft_time_limit=240, time_limit=300)
def rollups_reconcile(hours: int = 3) -> str:
    end = floor_hour(timezone.now() - SETTLE)
    reports = [rollups_rebuild(start=end - dt.timedelta(hours=hours), end=end)]
    reports += rollups_repair(before=end)  # marked hours older than that window
    return "; ".join(map(str, reports))
