"""Delivering events: signed webhooks a receiver can verify, retries with exponential backoff,
one post per delivery however often its task runs, e-mail, private hosts refused; and the
alert history page."""

from __future__ import annotations

import json

import pytest
from django.core import mail

from alerts.models import AlertDelivery, AlertEvent, AlertRule, ChannelKind, DeliveryStatus, RuleKind
from alerts.services import delivery_backoff_s, rule_secret_set
from alerts.tasks import alert_deliver
from tests.alerts.conftest import verify_signature

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_retries")]


def _event(*, webhook_urls: str = "", emails: str = "", name: str = "circuits") -> AlertEvent:
    rule = AlertRule.objects.create(
        name=name, kind=RuleKind.BREAKER_OPEN, webhook_urls=webhook_urls, emails=emails
    )
    from django.utils import timezone

    event = AlertEvent.objects.create(
        rule=rule, condition="circuit:1:m", summary="circuit p / m is open", details={"model": "m"},
        window_start=timezone.now(),
    )  # fmt: skip
    for url in rule.webhook_url_list:
        AlertDelivery.objects.create(event=event, channel=ChannelKind.WEBHOOK, target=url)
    for address in rule.email_list:
        AlertDelivery.objects.create(event=event, channel=ChannelKind.EMAIL, target=address)
    return event


def test_the_webhook_is_signed_so_the_receiver_can_verify_it_and_carries_no_secret(receiver):
    event = _event(webhook_urls=receiver.url)
    secret = rule_secret_set(rule=event.rule)
    delivery = event.deliveries.get()
    alert_deliver.delay(delivery.pk)

    [(headers, body, _)] = receiver.received
    assert verify_signature(secret, headers, body)
    assert not verify_signature("another-secret", headers, body)
    assert headers["X-Rana-Event"] == str(event.pk) and headers["X-Rana-Delivery"] == str(delivery.pk)
    payload = json.loads(body)
    assert payload["rule"]["name"] == "circuits" and payload["condition"] == "circuit:1:m"
    assert secret not in body.decode() and event.rule.webhook_secret_encrypted not in body.decode()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT and len(delivery.attempts) == 1


def test_a_receiver_that_fails_twice_gets_it_on_the_third_try_with_backoff(receiver, settings):
    settings.RANA_ALERT_RETRY_BASE_S = 2.0
    receiver.statuses = [500, 503]
    event = _event(webhook_urls=receiver.url)
    rule_secret_set(rule=event.rule, secret="s3cret-for-test")
    delivery = event.deliveries.get()
    alert_deliver.delay(delivery.pk)

    assert [answered for _, _, answered in receiver.received] == [500, 503, 200]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert [(a["ok"], a["error"], a["retry_in_s"]) for a in delivery.attempts] == [
        (False, "HTTP 500", 2.0),
        (False, "HTTP 503", 4.0),
        (True, "", None),
    ]
    assert all(verify_signature("s3cret-for-test", h, b) for h, b, _ in receiver.received)


def test_backoff_doubles_up_to_the_cap(settings):
    settings.RANA_ALERT_RETRY_BASE_S, settings.RANA_ALERT_RETRY_CAP_S = 30.0, 100.0
    assert [delivery_backoff_s(n) for n in range(4)] == [30.0, 60.0, 100.0, 100.0]


def test_out_of_retries_the_delivery_is_failed(receiver, settings):
    settings.RANA_ALERT_RETRY_BASE_S = 0.0
    receiver.statuses = [500] * 20
    delivery = _event(webhook_urls=receiver.url).deliveries.get()
    alert_deliver.delay(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert len(delivery.attempts) == len(receiver.received) == alert_deliver.max_retries + 1


def test_a_task_run_again_posts_nothing_for_a_delivery_already_sent(receiver):
    delivery = _event(webhook_urls=receiver.url).deliveries.get()
    alert_deliver.delay(delivery.pk)
    alert_deliver.delay(delivery.pk)  # a redelivered message
    assert len(receiver.received) == 1


def test_a_private_address_not_allowed_is_refused_without_posting(settings, receiver):
    settings.RANA_ALLOWED_WEBHOOK_HOSTS = []
    settings.RANA_ALERT_RETRY_BASE_S = 0.0
    delivery = _event(webhook_urls=receiver.url).deliveries.get()
    alert_deliver.delay(delivery.pk)
    delivery.refresh_from_db()
    assert receiver.received == [] and delivery.status == DeliveryStatus.FAILED
    assert "RANA_ALLOWED_WEBHOOK_HOSTS" in delivery.attempts[-1]["error"]


def test_email_delivery():
    delivery = _event(emails="ops@example.com").deliveries.get()
    alert_deliver.delay(delivery.pk)
    [message] = mail.outbox
    assert message.to == ["ops@example.com"] and "circuit p / m is open" in message.subject
    assert "Rule: circuits" in message.body
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT


def test_the_rule_refuses_a_webhook_url_on_a_private_address_not_allowed(settings):
    from django.core.exceptions import ValidationError

    settings.RANA_ALLOWED_WEBHOOK_HOSTS = []
    rule = AlertRule(name="r", kind=RuleKind.BREAKER_OPEN, webhook_urls="http://10.0.0.1/hook", emails="nope")
    with pytest.raises(ValidationError) as caught:
        rule.full_clean()
    assert "RANA_ALLOWED_WEBHOOK_HOSTS" in str(caught.value) and "nope" in str(caught.value)


def test_history_page_lists_events_newest_first_with_delivery_status(admin_client):
    first = _event(emails="a@example.com", name="rule-older")
    second = _event(emails="b@example.com", name="rule-newer")
    second.deliveries.update(status=DeliveryStatus.SENT)
    response = admin_client.get("/alerts/")
    body = response.content.decode()
    assert response.status_code == 200 and 'href="/alerts/"' in body  # the nav link
    assert body.index("rule-newer") < body.index("rule-older")
    assert "b@example.com: sent" in body and "a@example.com: pending" in body
    fragment = admin_client.get("/alerts/", headers={"HX-Request": "true"})
    assert fragment.content.decode().lstrip().startswith('<section id="alert-events"')
    assert first.summary in fragment.content.decode()


def test_history_page_needs_a_login(client):
    response = client.get("/alerts/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
