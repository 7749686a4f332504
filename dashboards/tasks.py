"""Periodic upkeep: rebuild the last few closed hours of rollups from the ledger.

The ledger_rows_written receiver keeps rollups current; this repairs what it can miss (a
process killed between the ledger commit and the rollup upsert, a completion rewritten after
it was first recorded). Only hours that closed at least SETTLE ago are rebuilt, so increments
still arriving for an hour (a request finishing late) do not race the rebuild.
Scheduled every 10 minutes by dashboards.apps (Celery beat); run by hand with rana_rollups.
"""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.utils import timezone

from dashboards.rollups.rebuild import rollups_rebuild
from dashboards.rollups.timegrid import floor_hour

SETTLE = dt.timedelta(minutes=10)
EVERY_S = 600


@shared_task(ignore_result=True, soft_time_limit=240, time_limit=300)
def rollups_reconcile(hours: int = 3) -> str:
    end = floor_hour(timezone.now() - SETTLE)
    return str(rollups_rebuild(start=end - dt.timedelta(hours=hours), end=end))
