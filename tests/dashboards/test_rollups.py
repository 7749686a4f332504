"""Rollups agree with the raw ledger: incremental upkeep equals a rebuild, and every figure the
selectors read through rollups equals a plain sum over the raw rows, for any range and zone."""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections import defaultdict
from decimal import Decimal

import pytest
from django.db import transaction
from django.forms.models import model_to_dict

from dashboards.models import AttemptRollup, CompletionRollup, ProviderStatus
from dashboards.rollups.bins import LATENCY_FIELDS, bin_index
from dashboards.rollups.incremental import rollups_add
from dashboards.rollups.rebuild import rollups_rebuild
from dashboards.rollups.specs import ATTEMPTS, COMPLETIONS
from dashboards.rollups.timegrid import cover
from dashboards.selectors.query import ledger_sums
from dashboards.selectors.timeslots import plan, series_edges
from dashboards.services.synth_ledger import synth_ledger_generate
from providers.models import Attempt, Completion
from providers.services.recorder import write_rows
from tests.dashboards.conftest import T0, attempt, filters, request_rows

END = dt.datetime(2025, 3, 13, 17, 23, 41, tzinfo=dt.UTC)


@pytest.fixture
def synthetic(db):
    return synth_ledger_generate(attempts=3000, days=3, seed=11, end=END)


def _table(model) -> list[dict]:
    """Every row, float sums rounded (adding the same floats in another order moves the last bit)."""
    rows = [model_to_dict(row, exclude=["id"]) for row in model.objects.all()]
    rows = [{k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()} for row in rows]
    return sorted(rows, key=lambda r: sorted((k, str(v)) for k, v in r.items()))


def test_incremental_upkeep_builds_the_same_rollups_as_a_rebuild(synthetic):
    rebuilt = (_table(AttemptRollup), _table(CompletionRollup), _table(ProviderStatus))
    for model in (AttemptRollup, CompletionRollup, ProviderStatus):
        model.objects.all().delete()
    rows = list(Completion.objects.all()) + list(Attempt.objects.all())
    for start in range(0, len(rows), 500):  # in recorder-sized batches, in any order
        rollups_add(rows[start : start + 500])
    assert (_table(AttemptRollup), _table(CompletionRollup), _table(ProviderStatus)) == rebuilt
    assert AttemptRollup.objects.count() > 100


def test_a_rebuild_is_idempotent(synthetic):
    first = _table(AttemptRollup), _table(CompletionRollup)
    rollups_rebuild(start=END - dt.timedelta(days=3), end=END)
    rollups_rebuild(start=END - dt.timedelta(hours=30), end=END - dt.timedelta(hours=2))
    assert (_table(AttemptRollup), _table(CompletionRollup)) == first


def _reference(spec, f, by, series: bool) -> dict:
    """Sums straight from the raw rows, in Python: the figures the rollups must reproduce."""
    edges = series_edges(f) if series else [f.start, f.end]
    rows = spec.raw_rows().filter(**{f"{spec.time_field}__gte": f.start, f"{spec.time_field}__lt": f.end})
    if not f.include_injected:
        rows = rows.filter(injected=False)
    if f.chain_id is not None:
        rows = rows.filter(chain_id=f.chain_id)
    out: dict = defaultdict(lambda: defaultdict(lambda: 0))
    for row in rows:
        slot = bisect_right(edges, getattr(row, spec.time_field)) - 1
        key = (slot, *(spec.dims[b] if getattr(row, b) is None else getattr(row, b) for b in by))
        sums = out[key]
        sums["count"] += 1
        sums["cost_usd"] += Decimal(row.cost_usd or 0)
        sums["input_tokens"] += row.input_tokens
        sums["unpriced"] += row.unpriced
        if spec is ATTEMPTS:
            sums["latency_ms_sum"] += row.latency_ms
            sums[LATENCY_FIELDS[bin_index(row.latency_ms)]] += 1
    return out


def _compare(spec, f, by, series: bool) -> None:
    expected = _reference(spec, f, by, series)
    rows = ledger_sums(spec, f, by, series=series, histograms=True)
    got = {(r["slot"], *(r[b] for b in by)): r for r in rows}
    assert set(got) == set(expected)
    count = "attempts" if spec is ATTEMPTS else "completions"
    for key, sums in expected.items():
        row = got[key]
        assert row[count] == sums["count"], key
        assert row["cost_usd"].quantize(Decimal("1e-9")) == sums["cost_usd"].quantize(Decimal("1e-9")), key
        assert (row["input_tokens"], row["unpriced"]) == (sums["input_tokens"], sums["unpriced"]), key
        if spec is ATTEMPTS:
            assert row["latency_ms_sum"] == pytest.approx(sums["latency_ms_sum"], rel=1e-9)
            assert [row[n] for n in LATENCY_FIELDS] == [sums[n] for n in LATENCY_FIELDS], key


RANGES = [
    (END - dt.timedelta(days=3), END),  # everything: raw edges, hours, whole days
    (END - dt.timedelta(hours=50, minutes=7), END - dt.timedelta(hours=3, minutes=11)),
    (END - dt.timedelta(hours=5, minutes=30), END - dt.timedelta(minutes=20)),  # hour series
    (END - dt.timedelta(minutes=50), END),  # minute series, raw only
]


@pytest.mark.parametrize("tz", ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"])
@pytest.mark.parametrize("span", range(len(RANGES)))
def test_rollup_figures_equal_raw_ledger_figures(synthetic, tz, span):
    start, end = RANGES[span]
    f = filters(start, end, tz)
    for series in (False, True):
        _compare(ATTEMPTS, f, ("provider_name", "outcome"), series)
        _compare(COMPLETIONS, f, ("outcome", "fallback_used", "gateway_key_prefix"), series)


def test_rollup_figures_equal_raw_figures_with_filters(synthetic):
    from providers.models import FallbackChain

    chain = FallbackChain.objects.get(slug="support")
    f = filters(*RANGES[1], "Europe/Paris", chain_id=chain.id, include_injected=True)
    _compare(ATTEMPTS, f, ("model", "source", "injected"), series=True)
    _compare(COMPLETIONS, f, ("answered_step", "source"), series=False)


def test_cover_and_plan_add_up_to_each_slot_exactly():
    edges = [
        dt.datetime(2025, 3, 1, 5, 17, tzinfo=dt.UTC),
        dt.datetime(2025, 3, 1, 23, 0, tzinfo=dt.UTC),
        dt.datetime(2025, 3, 2, 23, 0, tzinfo=dt.UTC),
        dt.datetime(2025, 3, 5, 23, 0, tzinfo=dt.UTC),
        dt.datetime(2025, 3, 6, 1, 3, 9, tzinfo=dt.UTC),
    ]
    for piece in cover(edges):
        assert piece.kind in ("raw", "h", "d") and piece.start < piece.end
    minute = dt.timedelta(minutes=1)
    signed = plan(edges)
    for slot in range(len(edges) - 1):
        moment = edges[slot]
        while moment < edges[slot + 1]:  # every minute of the slot counts exactly once
            weight = sum(p.sign for p in signed if p.slot == slot and p.start <= moment < p.end)
            assert weight == 1, (slot, moment)
            moment += minute * 7
        outside = edges[slot + 1] + dt.timedelta(hours=3)
        assert sum(p.sign for p in signed if p.slot == slot and p.start <= outside < p.end) == 0


def test_running_completions_count_once_they_finish(record, db):
    rows = request_rows(at=T0, attempts=[attempt()])
    completion = rows[0]
    completion.outcome = "running"
    record([completion])
    assert not CompletionRollup.objects.exists()
    completion.outcome = "success"
    record(rows)
    assert [r.completions for r in CompletionRollup.objects.all()] == [1, 1]  # its hour and its day


def test_a_rolled_back_write_leaves_the_rollups_alone(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        write_rows(request_rows(at=T0, attempts=[attempt()]))
        raise RuntimeError("roll back")
    assert not AttemptRollup.objects.exists() and not Attempt.objects.exists()


def test_provider_status_keeps_the_latest_success_and_error_whatever_the_order(record, db):
    late_error = attempt(outcome="server_error", http_status=503, error_message="503 late", at=T0)
    early_error = attempt(outcome="timeout", error_message="early", at=T0 - dt.timedelta(hours=1))
    skipped = attempt(outcome="circuit_open", at=T0 + dt.timedelta(hours=1))  # not a provider error
    record(request_rows(at=T0, attempts=[late_error, attempt(at=T0 + dt.timedelta(minutes=1))]))
    record(request_rows(at=T0, attempts=[early_error, skipped, attempt(at=T0 - dt.timedelta(hours=2))]))
    status = ProviderStatus.objects.get(provider_name="p1", injected=False)
    assert status.last_success_at == T0 + dt.timedelta(minutes=1)
    assert (status.last_error_at, status.last_error_class) == (T0, "server_error")
    assert status.last_error_status == 503
    assert status.last_error_message == "503 late"
