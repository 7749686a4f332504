"""Alerts for real: a Celery worker process evaluates the rules and posts each alert, signed, to a
webhook receiver on 127.0.0.1 exactly once, on the folder broker (SQLite pass) and on Redis
(PostgreSQL pass); the receiver's first answer is a 500, so the retry runs through the broker too.
"""

from __future__ import annotations

import json

import pytest

from tests.alerts.conftest import verify_signature
from tests.celery_worker import start_worker, wait_for
from tests.site.test_celery_worker import stack  # noqa: F401 (the fixture: a database and a broker)

pytestmark = pytest.mark.timeout(90)

SECRET = "integration-secret"

SEED = """
from django.utils import timezone
from alerts.models import AlertRule, RuleKind
from alerts.services import rule_secret_set
from providers.models import Attempt, ChainStep, Completion, FallbackChain, Provider
chain, _ = FallbackChain.objects.get_or_create(slug="alerts", defaults={{"name": "Alerts"}})
provider, _ = Provider.objects.get_or_create(name="{provider}", defaults={{"kind": "simulated"}})
rule, created = AlertRule.objects.get_or_create(
    name="errors", defaults={{"kind": RuleKind.ERROR_RATE, "threshold_pct": 50, "min_requests": 5,
    "webhook_urls": "{url}"}})
if created:
    rule_secret_set(rule=rule, secret="{secret}")
for i in range(6):
    c = Completion.objects.create(created_at=timezone.now(), chain=chain, chain_slug="alerts", source="api",
        outcome="failed")
    Attempt.objects.create(completion=c, started_at=c.created_at, chain=chain, source="api", step_position=0,
        provider=provider, provider_name=provider.name, provider_kind="simulated", model="m",
        outcome="server_error", latency_ms=1.0)
"""


def _seed_failing_provider(stack_, receiver, name: str) -> None:
    stack_.database.manage("shell", "-c", SEED.format(provider=name, url=receiver.url, secret=SECRET))


def _delivered(receiver) -> list[str]:
    return [body["summary"].split(":")[0] for body in receiver.bodies()]


def test_a_real_worker_posts_each_alert_once_signed_and_retries_a_failed_post(stack, receiver, tmp_path):  # noqa: F811
    receiver.statuses = [500]  # the first post fails: retried after RANA_ALERT_RETRY_BASE_S
    worker = start_worker(
        stack.database, stack.broker, tmp_path / "worker.log",
        RANA_ALLOWED_WEBHOOK_HOSTS="127.0.0.1", RANA_ALERT_RETRY_BASE_S="0.2",
        RANA_CELERY_QUEUE=stack.broker.queue,  # where the tasks it queues itself go
    )  # fmt: skip
    try:
        _seed_failing_provider(stack, receiver, "p-one")
        stack.broker.send("alerts.tasks.alerts_evaluate")
        wait_for(lambda: _delivered(receiver) == ["provider p-one"], 45, "the first alert")

        _seed_failing_provider(stack, receiver, "p-two")  # p-one still fails: no second alert for it
        stack.broker.send("alerts.tasks.alerts_evaluate")
        wait_for(lambda: len(_delivered(receiver)) == 2, 45, "the second alert")
    finally:
        worker.stop()

    assert sorted(_delivered(receiver)) == ["provider p-one", "provider p-two"]
    assert [status for _, _, status in receiver.received] == [500, 200, 200]
    assert all(verify_signature(SECRET, headers, body) for headers, body, _ in receiver.received)
    assert len({json.loads(body)["event_id"] for _, body, _ in receiver.received}) == 2
    rows = stack.database.query("SELECT status, attempts FROM alerts_alertdelivery ORDER BY id")
    assert [status for status, _ in rows] == ["sent", "sent"]
    first_attempts = rows[0][1] if isinstance(rows[0][1], list) else json.loads(rows[0][1])
    assert [a["ok"] for a in first_attempts] == [False, True]
