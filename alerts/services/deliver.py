"""Send one delivery (an event to one webhook or e-mail address), once.

Webhooks get the event as JSON, signed with HMAC-SHA256 over "<timestamp>.<body>" with the
rule's secret (kept encrypted like provider keys): headers X-Rana-Timestamp (Unix seconds),
X-Rana-Signature ("sha256=<hex>"), X-Rana-Event and X-Rana-Delivery (ids a receiver can
deduplicate on). A 2xx answer is a success; anything else, or no answer, is recorded as an
attempt (time, HTTP status, error) and retried by the task with exponential backoff until
RANA_ALERT_RETRIES are spent. A delivery already sent is never sent again, so a task that runs
twice (a redelivered message) posts nothing the second time. No secret is ever put in a payload,
an attempt's error or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import smtplib
import time

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from alerts.models import AlertDelivery, AlertEvent, AlertRule, ChannelKind, DeliveryStatus
from providers.services import redact, secret_decrypt, secret_encrypt, webhook_post

log = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    """This attempt failed; the task tries again in `retry_in_s`."""

    def __init__(self, message: str, retry_in_s: float) -> None:
        super().__init__(message)
        self.retry_in_s = retry_in_s


def delivery_backoff_s(retries: int) -> float:
    """How long to wait after the `retries`-th retry failed: the base, doubled each time, capped."""
    return min(settings.RANA_ALERT_RETRY_CAP_S, settings.RANA_ALERT_RETRY_BASE_S * 2**retries)


def rule_secret_set(*, rule: AlertRule, secret: str = "") -> str:
    """Store `secret` (a new random one when empty) encrypted on the rule; return it."""
    secret = secret or secrets.token_urlsafe(32)
    rule.webhook_secret_encrypted = secret_encrypt(secret)
    rule.save(update_fields=["webhook_secret_encrypted"])
    return secret


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def alert_payload(event: AlertEvent) -> dict:
    rule = event.rule
    return {
        "event_id": event.pk,
        "rule": {"id": rule.pk, "name": rule.name, "kind": rule.kind},
        "condition": event.condition,
        "summary": event.summary,
        "details": event.details,
        "fired_at": event.fired_at.isoformat(),
    }


def _post_webhook(delivery: AlertDelivery) -> None:
    """Raise RuntimeError (a refusal or a non-2xx answer) or httpx.HTTPError (no answer)."""
    event = delivery.event
    body = json.dumps(alert_payload(event), separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {"content-type": "application/json", "x-rana-timestamp": timestamp,
               "x-rana-event": str(event.pk), "x-rana-delivery": str(delivery.pk)}  # fmt: skip
    if event.rule.webhook_secret_encrypted:
        secret = secret_decrypt(event.rule.webhook_secret_encrypted)
        headers["x-rana-signature"] = webhook_signature(secret=secret, timestamp=timestamp, body=body)
    try:
        status = webhook_post(
            url=delivery.target, body=body, headers=headers, timeout_s=settings.RANA_ALERT_WEBHOOK_TIMEOUT_S
        )
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
    if not 200 <= status < 300:
        raise RuntimeError(f"HTTP {status}")


def _send_email(delivery: AlertDelivery) -> None:
    event = delivery.event
    body = f"{event.summary}\n\nRule: {event.rule.name}\nFired at: {event.fired_at.isoformat()}\n"
    body += "".join(f"{key}: {value}\n" for key, value in event.details.items())
    send_mail(f"[RANA alert] {event.summary}"[:200], body, None, [delivery.target])


def _attempt(delivery: AlertDelivery, error: str, retry_in_s: float | None) -> None:
    attempt = {"at": timezone.now().isoformat(), "ok": not error, "error": error, "retry_in_s": retry_in_s}
    delivery.attempts = [*delivery.attempts, attempt]


def delivery_send(*, delivery_id: int, retry_in_s: float | None) -> str:
    """Send the delivery unless it was sent already; record the attempt. A failure raises
    DeliveryFailed(retry_in_s), or, with retry_in_s None (no retries left), marks it failed."""
    delivery = AlertDelivery.objects.select_related("event__rule").get(pk=delivery_id)
    if delivery.status != DeliveryStatus.PENDING:
        return f"delivery {delivery_id} is {delivery.status} already"
    send = _post_webhook if delivery.channel == ChannelKind.WEBHOOK else _send_email
    try:
        send(delivery)
    except (RuntimeError, httpx.HTTPError, smtplib.SMTPException, OSError) as exc:
        error = redact(str(exc) or type(exc).__name__)[:500]
        _attempt(delivery, error, retry_in_s)
        delivery.status = DeliveryStatus.PENDING if retry_in_s is not None else DeliveryStatus.FAILED
        delivery.save(update_fields=["attempts", "status"])
        log.warning("alert delivery %s to %s failed: %s", delivery_id, delivery.channel, error)
        if retry_in_s is None:
            return f"delivery {delivery_id} failed: {error}"
        raise DeliveryFailed(error, retry_in_s) from None
    _attempt(delivery, "", None)
    delivery.status, delivery.sent_at = DeliveryStatus.SENT, timezone.now()
    delivery.save(update_fields=["attempts", "status", "sent_at"])
    return f"delivery {delivery_id} sent"
