"""The alerts' services: evaluating rules into events, and sending each event to its channels."""

from alerts.services.conditions import Condition, rule_conditions
from alerts.services.deliver import (
    DeliveryFailed,
    alert_payload,
    delivery_backoff_s,
    delivery_send,
    rule_secret_set,
    webhook_signature,
)
from alerts.services.evaluate import alerts_evaluate, deliveries_queue, rule_evaluate, window_start

__all__ = [
    "Condition",
    "DeliveryFailed",
    "alert_payload",
    "alerts_evaluate",
    "deliveries_queue",
    "delivery_backoff_s",
    "delivery_send",
    "rule_conditions",
    "rule_evaluate",
    "rule_secret_set",
    "webhook_signature",
    "window_start",
]
