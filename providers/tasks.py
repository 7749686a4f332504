"""The hub's Celery tasks: thin, settings in, one service call (found by the app's autodiscovery)."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError

from providers.services.probes import probes_send_due
from providers.services.retention import ledger_prune


@shared_task(
    ignore_result=True,
    autoretry_for=(DatabaseError,),  # a locked or unreachable database: again later
    retry_backoff=60,
    retry_backoff_max=900,
    max_retries=4,
    soft_time_limit=1800,
    time_limit=1900,
)
def ledger_retention(days: int | None = None) -> dict[str, Any]:
    """Delete ledger rows older than `days` (default RANA_RETENTION_DAYS) and request bodies older
    than RANA_BODY_RETENTION_DAYS; scheduled daily."""
    days = settings.RANA_RETENTION_DAYS if days is None else days
    return ledger_prune(days=days, body_days=settings.RANA_BODY_RETENTION_DAYS).as_dict()


@shared_task(
    ignore_result=True,
    soft_time_limit=30,
    time_limit=40,
)
def probes_run() -> list[dict[str, Any]]:
    """Send the health probes that are due (Provider.probe_enabled); scheduled every 10 s."""
    return [report.as_dict() for report in probes_send_due()]
