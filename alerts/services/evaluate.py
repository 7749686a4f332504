"""Evaluate every enabled rule: fire an event (and queue its deliveries) for each condition that
started to hold, resolve the events whose condition no longer holds.

Deduplicated per rule, condition and window: an event stays open while its condition holds (no
new event for it), and at most one event is made per rule, condition and `window_s` bucket (a
unique constraint, so evaluations that overlap cannot both fire); a condition that resolved and
holds again fires again from the next window on.
"""

from __future__ import annotations

import datetime as dt

from django.db import IntegrityError, transaction
from django.utils import timezone

from alerts.models import AlertDelivery, AlertEvent, AlertRule, ChannelKind
from alerts.services.conditions import Condition, rule_conditions


def window_start(now: dt.datetime, window_s: int) -> dt.datetime:
    """The start of the `window_s` bucket (counted from the epoch) that `now` falls in."""
    seconds = int(now.timestamp()) // window_s * window_s
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


def _event_fire(rule: AlertRule, condition: Condition, now: dt.datetime) -> AlertEvent | None:
    channels = [(ChannelKind.WEBHOOK, url) for url in rule.webhook_url_list]
    channels += [(ChannelKind.EMAIL, address) for address in rule.email_list]
    try:
        with transaction.atomic():
            event = AlertEvent.objects.create(
                rule=rule,
                condition=condition.key,
                summary=condition.summary[:300],
                details=condition.details,
                window_start=window_start(now, rule.window_s),
                fired_at=now,
            )
            AlertDelivery.objects.bulk_create(
                [
                    AlertDelivery(event=event, channel=kind, target=target)
                    for kind, target in dict.fromkeys(channels)
                ]
            )
    except IntegrityError:
        return None  # fired already in this window
    delivery_ids = list(event.deliveries.values_list("id", flat=True))
    transaction.on_commit(lambda: deliveries_queue(delivery_ids=delivery_ids))
    return event


def deliveries_queue(*, delivery_ids: list[int]) -> None:
    from alerts.tasks import alert_deliver  # the task calls this package's services

    for delivery_id in delivery_ids:
        alert_deliver.delay(delivery_id)


def rule_evaluate(*, rule: AlertRule, now: dt.datetime) -> list[AlertEvent]:
    """Fire what started to hold, resolve what stopped; the events fired."""
    holding = {c.key: c for c in rule_conditions(rule, now)}
    open_events = {e.condition: e for e in rule.events.filter(resolved_at__isnull=True)}
    gone = [e.pk for key, e in open_events.items() if key not in holding]
    AlertEvent.objects.filter(pk__in=gone).update(resolved_at=now)
    fired = (_event_fire(rule, c, now) for key, c in holding.items() if key not in open_events)
    return [event for event in fired if event is not None]


def alerts_evaluate(*, now: dt.datetime | None = None) -> list[AlertEvent]:
    """Evaluate every enabled rule (beat runs this every 30 s: alerts.tasks.alerts_evaluate)."""
    now = now or timezone.now()
    rules = AlertRule.objects.filter(enabled=True).order_by("id")
    return [event for rule in rules for event in rule_evaluate(rule=rule, now=now)]
