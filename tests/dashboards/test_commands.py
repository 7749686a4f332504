"""rana_synth_ledger and rana_rollups."""

from __future__ import annotations

import io
import itertools
from collections import defaultdict
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, Sum

from dashboards.models import AttemptRollup, CompletionRollup, Grain
from providers.engine.cost import attempt_cost
from providers.engine.types import Price, Usage
from providers.models import Attempt, Completion, FallbackChain, ModelPrice

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


RETRIED = {"server_error", "timeout", "connection_error", "bad_response", "rate_limited"}


def _price(kind: str, model: str) -> Price | None:
    row = ModelPrice.objects.filter(provider_kind=kind, model=model).order_by("-effective_from").first()
    return Price(row.input_per_mtok, row.output_per_mtok, row.cached_input_per_mtok) if row else None


def _assert_engine_rules(completions, attempts_of) -> None:
    prices: dict[tuple[str, str], Price | None] = {}
    money = Decimal("1e-10")
    for c in completions:
        attempts = attempts_of[c.id]
        assert c.attempt_count == sum(a.outcome != "circuit_open" for a in attempts)
        assert c.cost_usd == sum((a.cost_usd for a in attempts if a.cost_usd is not None), Decimal(0))
        answered = [a for a in attempts if a.outcome == "success"]
        if c.outcome == "success":
            assert len(answered) == 1 and answered[0] is attempts[-1]
            assert c.fallback_used == (answered[0].step_position != attempts[0].step_position)
            assert c.answered_step == answered[0].step_position
        else:
            assert not answered and not c.fallback_used
        for a in attempts:
            if a.outcome == "circuit_open":
                assert a.latency_ms == 0 and a.cost_usd is None and a.input_tokens == 0
                continue
            price = prices.setdefault((a.provider_kind, a.model), _price(a.provider_kind, a.model))
            usage = Usage(a.input_tokens, a.output_tokens, a.cached_tokens) if a.input_tokens else None
            cost, unpriced = attempt_cost(usage, price)
            assert a.unpriced == unpriced
            assert a.cost_usd == (cost.quantize(money) if cost is not None else None)
        steps = [(a.step_position, a.retry_index) for a in attempts if a.outcome != "circuit_open"]
        assert steps == sorted(steps)  # in chain order, retries of a step in a row
        assert all(x.started_at <= y.started_at for x, y in itertools.pairwise(attempts))


def test_synth_ledger_rows_follow_the_engines_rules(db):
    _synth(attempts=1500, days=1, seed=3, no_rollups=True)
    attempts_of = defaultdict(list)
    for a in Attempt.objects.order_by("started_at", "id"):
        attempts_of[a.completion_id].append(a)
    completions = list(Completion.objects.all())
    _assert_engine_rules(completions, attempts_of)
    assert sum(len(rows) for rows in attempts_of.values()) >= 1500
    outcomes = {c.outcome for c in completions}
    assert {"success", "failed", "cache_hit"} <= outcomes
    assert Attempt.objects.filter(outcome="circuit_open").exists()  # the breaker was in play
    retried = Attempt.objects.filter(retry_index=1).values_list("completion_id", flat=True)
    assert retried.exists()  # retries of the same step happen, after a retryable failure
    for completion_id in retried[:50]:
        first = next(a for a in attempts_of[completion_id] if a.retry_index == 1)
        before = attempts_of[completion_id][attempts_of[completion_id].index(first) - 1]
        assert before.outcome in RETRIED


def test_synth_ledger_is_reproducible_with_a_seed(db):
    _synth(attempts=300, days=1, seed=9, no_rollups=True)
    # A 0 ms failure (auth_error) and the next step's attempt share a started_at: order totally.
    in_order = ("started_at", "step_position", "retry_index")
    first = list(Attempt.objects.order_by(*in_order).values_list("outcome", "latency_ms"))
    Attempt.objects.all().delete()
    Completion.objects.all().delete()
    _synth(attempts=300, days=1, seed=9, no_rollups=True)
    assert list(Attempt.objects.order_by(*in_order).values_list("outcome", "latency_ms")) == first
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


def test_reconcile_task_repairs_the_last_closed_hours(beat_schedules):
    from django.utils import timezone
    from django_celery_beat.models import PeriodicTask

    from dashboards.tasks import rollups_reconcile

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
    scheduled = PeriodicTask.objects.get(name="rollups reconcile")  # beat's schedule, in the database
    assert scheduled.task == "dashboards.tasks.rollups_reconcile" and scheduled.enabled
    assert (scheduled.interval.every, scheduled.interval.period) == (10, "minutes")
