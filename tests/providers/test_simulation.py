"""ledger_simulate: synthetic ledger rows made by the real fallback engine, so they follow its rules."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest

from providers.engine.backoff import backoff_ceiling
from providers.engine.cost import attempt_cost
from providers.engine.types import Price, Usage
from providers.models import ChainStep, FallbackChain, ModelPrice, Provider
from providers.services.faults import FaultSpec
from providers.services.simulation import (
    ATTEMPT_FIELDS,
    COMPLETION_FIELDS,
    Behaviour,
    Incident,
    SimRequest,
    ledger_simulate,
    simulation_chains,
)

T0 = dt.datetime(2025, 3, 1, 12, tzinfo=dt.UTC)
FINE = Behaviour(latency_ms=800, ttft_ms=300, failure_rate=0.0, stream_cut_rate=0.0)


def always(failure: str) -> Behaviour:
    return Behaviour(latency_ms=800, failure_rate=1.0, failures=((failure, 1.0),), stream_cut_rate=0.0)


@pytest.fixture
def chain(db) -> FallbackChain:
    """Two steps: openai/model-a (priced, retried once) then anthropic/model-b (priced, no window)."""
    today = dt.date(2020, 1, 1)
    ModelPrice.objects.create(
        provider_kind="openai", model="model-a", input_per_mtok=Decimal("2.5"),
        output_per_mtok=Decimal("10"), cached_input_per_mtok=Decimal("1.25"), effective_from=today,
    )  # fmt: skip
    ModelPrice.objects.create(
        provider_kind="anthropic", model="model-b", input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"), effective_from=today,
    )  # fmt: skip
    chain = FallbackChain.objects.create(name="Sim", slug="sim", default_retries=1, backoff_base_s=0.5)
    a = Provider.objects.create(name="prov-a", kind="openai")
    b = Provider.objects.create(name="prov-b", kind="anthropic")
    ChainStep.objects.create(chain=chain, position=0, provider=a, model="model-a")
    ChainStep.objects.create(chain=chain, position=1, provider=b, model="model-b")
    return chain


def simulate(requests, behaviours=None, **options):
    behaviours = {"model-a": FINE, "model-b": FINE} | (behaviours or {})
    return list(ledger_simulate(requests=requests, behaviours=behaviours, seed=3, **options))


def one(behaviours=None, **request):
    ((completion, attempts),) = simulate([SimRequest(at=T0, chain="sim", **request)], behaviours)
    assert list(completion) == list(COMPLETION_FIELDS)
    assert all(list(a) == list(ATTEMPT_FIELDS) for a in attempts)
    return completion, attempts


def test_a_429_on_the_first_step_falls_back_to_the_next_at_once(chain):
    completion, attempts = one({"model-a": always("rate_limited")})
    assert [(a["step_position"], a["retry_index"], a["outcome"]) for a in attempts] == [
        (0, 0, "rate_limited"),
        (1, 0, "success"),
    ]
    assert attempts[0]["http_status"] == 429 and attempts[0]["retry_after_s"] >= 1
    first_ends = attempts[0]["started_at"] + dt.timedelta(milliseconds=attempts[0]["latency_ms"])
    assert attempts[1]["started_at"] == first_ends  # no Retry-After wait while a later step exists
    assert completion["outcome"] == "success" and completion["fallback_used"] is True
    assert completion["answered_step"] == 1 and completion["answered_model"] == "model-b"
    assert completion["attempt_count"] == 2 and completion["error_class"] == ""


def test_an_injected_429_then_an_answer_is_marked_injected(chain):
    fault = FaultSpec(step=0, failure="rate_limited", retry_after_s=2.0, times=1)
    completion, attempts = one(faults=(fault,), source="playground")
    assert [a["outcome"] for a in attempts] == ["rate_limited", "success"]
    assert [a["injected"] for a in attempts] == [True, False] and completion["injected"] is True
    assert attempts[0]["retry_after_s"] == 2.0 and completion["fallback_used"] is True


def test_server_errors_are_retried_with_jittered_backoff_then_fall_back(chain):
    completion, attempts = one({"model-a": always("server_error")})
    assert [(a["step_position"], a["retry_index"], a["outcome"]) for a in attempts] == [
        (0, 0, "server_error"),
        (0, 1, "server_error"),
        (1, 0, "success"),
    ]
    first, second = attempts[0], attempts[1]
    wait = (second["started_at"] - first["started_at"]).total_seconds() - first["latency_ms"] / 1000
    assert 0 <= wait <= backoff_ceiling(0, base_s=0.5, cap_s=chain.backoff_cap_s) + 1e-6
    assert first["http_status"] == 503 and completion["attempt_count"] == 3


def test_the_last_step_waits_for_retry_after_before_its_retry(chain):
    chain.steps.filter(position=1).delete()
    completion, attempts = one({"model-a": always("rate_limited")})
    assert [a["retry_index"] for a in attempts] == [0, 1]
    first, second = attempts
    wait = (second["started_at"] - first["started_at"]).total_seconds() - first["latency_ms"] / 1000
    assert wait == pytest.approx(first["retry_after_s"])
    assert completion["outcome"] == "failed" and completion["error_class"] == "rate_limited"
    assert completion["retry_after_s"] == second["retry_after_s"]


def test_stop_classes_end_the_walk_and_timeouts_wait_within_the_deadline(chain):
    completion, attempts = one({"model-a": always("invalid_request")})
    assert [a["outcome"] for a in attempts] == ["invalid_request"] and completion["outcome"] == "failed"
    completion, attempts = one({"model-a": always("timeout")})  # 30 s read timeout, 60 s deadline
    assert [a["outcome"] for a in attempts] == ["timeout", "timeout"]
    assert attempts[0]["latency_ms"] == pytest.approx(chain.step_timeout_s * 1000)
    ends = attempts[1]["started_at"] + dt.timedelta(milliseconds=attempts[1]["latency_ms"])
    assert abs(ends - (T0 + dt.timedelta(seconds=chain.deadline_s))) < dt.timedelta(milliseconds=1)
    assert completion["error_class"] == "timeout" and "deadline exceeded" in completion["error_message"]
    chain.deadline_s = 120
    chain.save()
    _, attempts = one({"model-a": always("timeout")})
    assert [a["outcome"] for a in attempts] == ["timeout", "timeout", "success"]


def test_costs_are_the_engines_and_the_completion_sums_them(chain):
    completion, attempts = one(
        {"model-a": always("server_error")}, input_tokens=1200, output_tokens=300, cached_tokens=400
    )
    answer = attempts[-1]
    assert (answer["input_tokens"], answer["output_tokens"], answer["cached_tokens"]) == (1200, 300, 400)
    price = Price(Decimal("3"), Decimal("15"))
    assert answer["cost_usd"] == attempt_cost(Usage(1200, 300, 400), price)[0]
    assert [a["cost_usd"] for a in attempts[:2]] == [None, None]  # failures without usage cost nothing
    assert completion["cost_usd"] == answer["cost_usd"] and completion["input_tokens"] == 1200


def test_unpriced_models_are_flagged(chain):
    ModelPrice.objects.filter(model="model-a").delete()
    completion, attempts = one()
    assert attempts[0]["cost_usd"] is None and attempts[0]["unpriced"] is True
    assert completion["unpriced"] is True and completion["cost_usd"] == 0


def test_streams_measure_ttft_and_can_be_cut_or_cancelled(chain):
    completion, attempts = one(stream=True)
    assert 0 < attempts[0]["ttft_ms"] < attempts[0]["latency_ms"] and completion["ttft_ms"] > 0
    cut = Behaviour(latency_ms=800, failure_rate=0.0, stream_cut_rate=1.0)
    completion, attempts = one({"model-a": cut}, stream=True)
    assert [a["outcome"] for a in attempts] == ["stream_interrupted"]  # no fallback after a token
    assert completion["outcome"] == "stream_interrupted" and attempts[0]["cost_usd"] > 0
    completion, attempts = one(stream=True, cancel=True)
    assert [a["outcome"] for a in attempts] == ["cancelled"] and completion["outcome"] == "cancelled"


def test_the_breaker_opens_and_circuit_open_skips_are_not_counted(chain):
    requests = [SimRequest(at=T0 + dt.timedelta(seconds=i), chain="sim") for i in range(6)]
    rows = simulate(requests, {"model-a": always("server_error")})
    skipped = [c for c, attempts in rows if attempts[0]["outcome"] == "circuit_open"]
    assert skipped  # five straight server errors open model-a's circuit (RANA_BREAKER_THRESHOLD)
    for completion, attempts in rows:
        assert completion["attempt_count"] == sum(a["outcome"] != "circuit_open" for a in attempts)
    completion, attempts = rows[-1]
    assert [a["outcome"] for a in attempts] == ["circuit_open", "success"]
    assert completion["fallback_used"] is True and attempts[0]["latency_ms"] == 0
    no_breaker = simulate(requests, {"model-a": always("server_error")}, breaker=False)
    assert all(a["outcome"] != "circuit_open" for _, attempts in no_breaker for a in attempts)


def test_incidents_raise_failures_only_while_they_last(chain):
    incident = Incident("prov-a", T0, T0 + dt.timedelta(minutes=1), 1.0, "connection_error")
    during = SimRequest(at=T0, chain="sim")
    after = SimRequest(at=T0 + dt.timedelta(minutes=2), chain="sim")
    (_, first), (_, second) = simulate([during, after], incidents=[incident], breaker=False)
    assert first[0]["outcome"] == "connection_error" and second[0]["outcome"] == "success"


def test_cache_hits_and_budget_blocks_have_no_attempts(chain):
    hit, attempts = one(settled="cache_hit")
    assert attempts == [] and hit["outcome"] == "cache_hit" and hit["answered_step"] == 0
    assert hit["cost_usd"] == 0 and hit["attempt_count"] == 0
    blocked, _ = one(settled="budget_blocked")
    assert blocked["outcome"] == blocked["error_class"] == "budget_blocked"


def test_simulated_providers_keep_their_own_options(chain):
    Provider.objects.filter(name="prov-a").update(kind="simulated", options={"down": True})
    _, attempts = one()
    assert [a["outcome"] for a in attempts[:2]] == ["connection_error", "connection_error"]
    assert attempts[-1]["provider_name"] == "prov-b" and attempts[-1]["outcome"] == "success"


def test_the_same_seed_gives_the_same_rows_and_chains_are_listed(chain):
    mixed = {"model-a": Behaviour(failure_rate=0.4), "model-b": Behaviour(failure_rate=0.2)}
    requests = [SimRequest(at=T0 + dt.timedelta(seconds=7 * i), chain="sim") for i in range(200)]
    assert simulate(requests, mixed) == simulate(requests, mixed)
    assert simulation_chains() == {"sim": 2}
    with pytest.raises(ValueError, match="no chain"):
        simulate([SimRequest(at=T0, chain="nope")])


def test_a_cancelled_half_open_probe_does_not_keep_the_circuit_open(chain):
    """A stopped stream as the half-open probe gives its slot back (it kept circuits open for good)."""
    storm = Incident("prov-a", T0, T0 + dt.timedelta(seconds=1), 1.0, "rate_limited")  # opens it
    requests = [
        SimRequest(at=T0, chain="sim"),
        SimRequest(at=T0 + dt.timedelta(minutes=1), chain="sim", stream=True, cancel=True),  # the probe
        SimRequest(at=T0 + dt.timedelta(minutes=2), chain="sim"),
    ]
    rows = simulate(requests, incidents=[storm])
    assert [a["outcome"] for a in rows[0][1]] == ["rate_limited", "success"]
    assert [a["outcome"] for a in rows[1][1]] == ["cancelled"]
    assert [a["outcome"] for a in rows[2][1]] == ["success"]


def test_it_runs_even_when_the_callers_thread_runs_an_event_loop(transactional_db, chain, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")  # as under the browser tests' Playwright loop

    async def inside_a_loop():
        return simulate([SimRequest(at=T0, chain="sim")])

    ((completion, _),) = asyncio.run(inside_a_loop())
    assert completion["outcome"] == "success"
