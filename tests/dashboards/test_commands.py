"""rana_synth_ledger and rana_rollups."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, Sum

from dashboards.models import AttemptRollup, CompletionRollup, Grain
from providers.models import Attempt, Completion, FallbackChain

END = "2025-03-13T17:23:41+00:00"


def _synth(**options) -> str:
    out = io.StringIO()
    call_command("rana_synth_ledger", stdout=out, end=END, **options)
    return out.getvalue()


def test_synth_ledger_makes_a_realistic_ledger_and_its_rollups(db):
    output = _synth(attempts=2000, days=2, seed=5)
    attempts = Attempt.objects.count()
    assert 2000 <= attempts < 2060 and "attempts" in output  # at least the size asked, about
    slugs = set(FallbackChain.objects.values_list("slug", flat=True))
    assert slugs == {"support", "premium", "batch", "local-first"}
    outcomes = dict(Attempt.objects.values_list("outcome").annotate(n=Count("id")))
    assert outcomes["success"] > attempts * 0.8 and len(outcomes) >= 6  # failures of many classes
    assert Completion.objects.filter(fallback_used=True).exists()
    assert Completion.objects.filter(outcome="cache_hit").exists()
    assert Attempt.objects.filter(unpriced=True).exists() and Attempt.objects.filter(injected=True).exists()
    keyed = Completion.objects.exclude(gateway_key_prefix="")
    assert set(keyed.values_list("source", flat=True)) <= {"api", "batch"}
    day_total = AttemptRollup.objects.filter(grain=Grain.DAY).aggregate(n=Sum("attempts"))["n"]
    assert day_total == attempts
    assert CompletionRollup.objects.filter(grain=Grain.HOUR).aggregate(n=Sum("completions"))["n"] == (
        Completion.objects.count()
    )


def test_synth_ledger_is_reproducible_with_a_seed(db):
    _synth(attempts=300, days=1, seed=9, no_rollups=True)
    first = list(Attempt.objects.order_by("started_at").values_list("outcome", "latency_ms"))
    Attempt.objects.all().delete()
    Completion.objects.all().delete()
    _synth(attempts=300, days=1, seed=9, no_rollups=True)
    assert list(Attempt.objects.order_by("started_at").values_list("outcome", "latency_ms")) == first
    assert not AttemptRollup.objects.exists()


def test_rana_rollups_rebuilds_a_range(db):
    _synth(attempts=300, days=1, seed=2, no_rollups=True)
    out = io.StringIO()
    call_command("rana_rollups", start="2025-03-12T00:00", end="2025-03-14T00:00", stdout=out)
    assert "rollups rebuilt" in out.getvalue()
    hours = AttemptRollup.objects.filter(grain=Grain.HOUR)
    assert hours.aggregate(n=Sum("attempts"))["n"] == Attempt.objects.count()


def test_commands_refuse_bad_arguments(db):
    with pytest.raises(CommandError):
        call_command("rana_synth_ledger", attempts=0)
    with pytest.raises(CommandError):
        call_command("rana_rollups", since="yesterday")
    with pytest.raises(CommandError):
        call_command("rana_rollups")


def test_reconcile_task_repairs_the_last_closed_hours(db):
    from django.utils import timezone

    from dashboards.tasks import rollups_reconcile
    from rana_site.celery import app

    now = timezone.now().replace(microsecond=0).isoformat()
    call_command("rana_synth_ledger", attempts=400, days=0.5, seed=4, end=now, stdout=io.StringIO())
    hours = AttemptRollup.objects.filter(grain=Grain.HOUR)
    before = hours.count()
    lost = hours.order_by("bucket")[1]  # an hour that closed long ago
    key = {
        name: getattr(lost, name) for name in ("grain", "bucket", "chain_id", "source", "model", "outcome")
    }
    key |= {
        "provider_name": lost.provider_name,
        "step_position": lost.step_position,
        "injected": lost.injected,
    }
    lost.delete()  # as if a process had died before adding its rows
    assert "rollups rebuilt" in rollups_reconcile.delay(hours=24).get()
    assert hours.count() == before
    assert AttemptRollup.objects.get(**key).attempts == lost.attempts
    assert "dashboards-rollups-reconcile" in app.conf.beat_schedule
