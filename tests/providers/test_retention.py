"""Ledger retention (providers.services.retention): completions older than the age go with their
attempts, in batches; newer rows and the dashboards' rollups stay. Also its command and task
(eager here; tests/site/test_celery_worker.py runs the task on a real worker)."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.db.models import Sum
from django_celery_beat.models import PeriodicTask

from dashboards.models import AttemptRollup, CompletionRollup, Grain
from providers.models import Attempt, Completion
from providers.services.recorder import write_rows
from providers.services.retention import ledger_prune
from providers.tasks import ledger_retention
from tests.dashboards.conftest import attempt, request_rows

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.fixture
def ledger(db, django_capture_on_commit_callbacks) -> dict[str, set]:
    """Requests of two attempts each, 200, 100, 91, 89 and 1 days old; their rollups written."""
    ids: dict[str, set] = {"old": set(), "new": set()}
    for age in (200, 100, 91, 89, 1):
        rows = request_rows(at=NOW - age * DAY, attempts=[attempt(outcome="timeout"), attempt(step=1)])
        with django_capture_on_commit_callbacks(execute=True):
            write_rows(rows)
        ids["old" if age > 90 else "new"].add(rows[0].id)
    return ids


def _rollup_sums() -> tuple:
    """Attempts and completions in the hour rows (the day rows hold them again)."""
    return (
        AttemptRollup.objects.filter(grain=Grain.HOUR).aggregate(n=Sum("attempts"))["n"],
        CompletionRollup.objects.filter(grain=Grain.HOUR).aggregate(n=Sum("completions"))["n"],
    )


def test_prunes_exactly_the_completions_older_than_the_age_with_their_attempts_in_batches(ledger):
    rollups = _rollup_sums()
    report = ledger_prune(days=90, now=NOW, batch_size=2)
    assert (report.completions, report.attempts, report.batches) == (3, 6, 2)
    assert set(Completion.objects.values_list("id", flat=True)) == ledger["new"]
    assert set(Attempt.objects.values_list("completion_id", flat=True)) == ledger["new"]
    assert _rollup_sums() == rollups == (10, 5)
    assert "pruned in 2 batches 3 completions and 6 attempts" in str(report)
    assert ledger_prune(days=90, now=NOW).completions == 0  # nothing left to prune


def test_zero_days_keeps_everything_and_a_dry_run_only_counts(ledger):
    off = ledger_prune(days=0, now=NOW)
    assert off.before is None and "off" in str(off)
    dry = ledger_prune(days=90, now=NOW, dry_run=True)
    assert (dry.completions, dry.attempts) == (3, 6) and "would prune" in str(dry)
    assert Completion.objects.count() == 5 and Attempt.objects.count() == 10


def test_the_command_dry_runs_and_prunes(ledger, settings):
    settings.RANA_RETENTION_DAYS = 10_000  # older than anything here: the default prunes nothing
    out = io.StringIO()
    call_command("rana_prune", stdout=out)
    assert "0 completions" in out.getvalue()
    call_command("rana_prune", "--days", "1", "--dry-run", stdout=out)
    assert "would prune 5 completions and 10 attempts" in out.getvalue()
    assert Completion.objects.count() == 5


def test_the_task_reads_the_setting_and_is_scheduled_daily(ledger, settings, beat_schedules):
    settings.RANA_RETENTION_DAYS = settings.RANA_BODY_RETENTION_DAYS = 0
    assert ledger_retention.delay().get() == {
        "before": None,
        "completions": 0,
        "attempts": 0,
        "bodies_before": None,
        "bodies": 0,
    }
    assert ledger_retention.delay(days=1).get()["completions"] == 5
    task = PeriodicTask.objects.get(name="ledger retention")
    assert task.task == "providers.tasks.ledger_retention" and task.enabled
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "3", "*")
