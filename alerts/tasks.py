"""The alerts' Celery tasks: thin, ids in, one service call (found by the app's autodiscovery).

alerts_evaluate runs on the beat schedule (every 30 s: a django-celery-beat row made by migration
0002, editable in the admin); each event it fires queues one alert_deliver per channel.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from alerts import services
from alerts.services import DeliveryFailed, delivery_backoff_s, delivery_send


@shared_task(ignore_result=True, soft_time_limit=25, time_limit=30)
def alerts_evaluate() -> str:
    fired = services.alerts_evaluate()
    return f"{len(fired)} alert(s) fired"


@shared_task(
    bind=True, ignore_result=True, max_retries=settings.RANA_ALERT_RETRIES, soft_time_limit=60, time_limit=90
)
def alert_deliver(self, delivery_id: int) -> str:
    """Send one delivery; on failure again after delivery_backoff_s (base, doubling, capped)."""
    last = self.request.retries >= self.max_retries
    retry_in_s = None if last else delivery_backoff_s(self.request.retries)
    try:
        return delivery_send(delivery_id=delivery_id, retry_in_s=retry_in_s)
    except DeliveryFailed as exc:
        raise self.retry(exc=exc, countdown=exc.retry_in_s) from None
