"""Traces, the JSON completion log and the in-process metrics, through the one service path."""

from __future__ import annotations

import datetime as dt
import json
import logging
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from prometheus_client.parser import text_string_to_metric_families

from providers.engine.clock import FakeClock
from providers.engine.types import Usage
from providers.models import Attempt, ChainStep, FallbackChain, ModelPrice, Provider
from providers.services import observe, tracing
from providers.services.completions import complete
from providers.services.ledger import Caller
from rana_site.logs import JsonFormatter
from tests.providers.engine_fakes import ScriptedAdapter, fail, ok

pytestmark = pytest.mark.django_db(transaction=True)

PROMPT = "tell me the launch codes 7431"
ANSWER = "the answer text 9182"
MESSAGES = [{"role": "user", "content": PROMPT}]


@pytest.fixture
def chain(db):
    first = Provider.objects.create(name="first", kind="simulated")
    second = Provider.objects.create(name="second", kind="simulated")
    chain = FallbackChain.objects.create(name="Main", slug="main", is_default=True, default_retries=0)
    ChainStep.objects.create(chain=chain, position=0, provider=first, model="m1")
    ChainStep.objects.create(chain=chain, position=1, provider=second, model="m2")
    ModelPrice.objects.create(
        provider_kind="simulated",
        model="m2",
        input_per_mtok=Decimal("1"),
        output_per_mtok=Decimal("2"),
        effective_from=dt.date(2025, 1, 1),
    )
    return chain


@pytest.fixture
def adapter():
    adapter = ScriptedAdapter(FakeClock())
    adapter.script("first", "m1", fail("server_error", status=503))
    adapter.script("second", "m2", ok(ANSWER, usage=Usage(10, 5), model="m2-2026"))
    return adapter


@pytest.fixture
def observed(settings):
    def configure(**values):
        for name, value in values.items():
            setattr(settings, name, value)
        observe.observe_reset()
        observe.observe_start()

    yield configure
    observe.observe_reset()


def _run(adapter, **caller):
    overrides = {"adapter_for": lambda kind: adapter, "clock": adapter.clock}
    return complete(messages=MESSAGES, caller=Caller(**caller), overrides=overrides)


async def test_one_request_span_with_a_child_per_attempt_and_no_prompt_text(chain, adapter, spans):
    result = await _run(adapter, source="api")
    finished = spans.get_finished_spans()
    request = next(s for s in finished if s.parent is None)
    children = [s for s in finished if s.parent is not None]
    assert request.name == "chat m1"
    assert request.attributes["gen_ai.operation.name"] == "chat"
    assert request.attributes["gen_ai.request.model"] == "m1"
    assert request.attributes["gen_ai.response.model"] == "m2-2026"
    assert request.attributes["gen_ai.provider.name"] == "simulated"
    assert (
        request.attributes["gen_ai.usage.input_tokens"],
        request.attributes["gen_ai.usage.output_tokens"],
    ) == (
        10,
        5,
    )
    assert request.attributes["rana.chain"] == "main"
    assert request.attributes["rana.request_id"] == str(result.request_id)
    assert request.attributes["rana.attempts"] == 2 and request.attributes["rana.fallback"] is True
    assert [(c.attributes["rana.provider"], c.attributes["rana.outcome"]) for c in children] == [
        ("first", "server_error"),
        ("second", "success"),
    ]
    assert all(c.parent.span_id == request.context.span_id for c in children)
    assert all(c.context.trace_id == request.context.trace_id for c in children)
    assert children[0].attributes["http.response.status_code"] == 503
    assert "rana.latency_ms" in children[1].attributes
    text = json.dumps([dict(s.attributes) | {"name": s.name} for s in finished])
    assert PROMPT not in text and ANSWER not in text and "7431" not in text and "9182" not in text


async def test_no_spans_without_a_tracer(chain, adapter, monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    tracing.tracing_reset()
    await _run(adapter)
    assert tracing.tracer() is None


def test_tracing_is_wanted_only_when_the_otel_variables_say_so():
    assert not tracing.tracing_wanted({})
    assert tracing.tracing_wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing.tracing_wanted({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.tracing_wanted({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"})
    assert not tracing.tracing_wanted({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"})


async def test_json_log_has_one_parseable_line_per_completion(chain, adapter, observed, caplog):
    observed(LOG_FORMAT="json")
    caplog.set_level(logging.INFO, logger="rana.completion")
    result = await _run(adapter, source="api", gateway_key_prefix="rana_abc1234")
    records = [r for r in caplog.records if r.name == "rana.completion"]
    assert len(records) == 1
    line = JsonFormatter().format(records[0])
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["request_id"] == str(result.request_id)
    assert (fields["chain"], fields["outcome"], fields["attempts"], fields["fallback"]) == (
        "main",
        "success",
        2,
        True,
    )
    assert Decimal(fields["cost_usd"]) == result.cost_usd and fields["latency_ms"] > 0
    assert PROMPT not in line and ANSWER not in line


async def test_no_completion_line_in_text_format(chain, adapter, observed, caplog):
    observed(LOG_FORMAT="text")
    caplog.set_level(logging.INFO, logger="rana.completion")
    await _run(adapter)
    assert not [r for r in caplog.records if r.name == "rana.completion"]


def test_json_lines_redact_keys():
    key = "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123"
    record = logging.LogRecord("rana.x", logging.WARNING, __file__, 1, "upstream refused %s", (key,), None)
    record.rana = {"detail": f"Bearer {key}"}
    line = JsonFormatter().format(record)
    fields = json.loads(line)
    assert key not in line and fields["message"].startswith("upstream refused ••••")
    assert fields["level"] == "WARNING" and fields["logger"] == "rana.x"


async def test_metrics_in_one_process_count_what_the_ledger_holds(chain, adapter, observed):
    observed(RANA_METRICS=True)
    scrape = sync_to_async(observe.metrics_exposition)
    before = _samples((await scrape())[0].decode())
    await _run(adapter, source="api")
    after = _samples((await scrape())[0].decode())

    def delta(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("rana_requests_total", chain="main", source="api", outcome="success") == 1
    assert delta("rana_attempts_total", provider="first", model="m1", outcome="server_error") == 1
    assert delta("rana_attempts_total", provider="second", model="m2", outcome="success") == 1
    assert delta("rana_fallbacks_total", chain="main") == 1
    assert delta("rana_tokens_total", provider="second", model="m2", direction="output") == 5
    cost = sum([a.cost_usd async for a in Attempt.objects.exclude(cost_usd=None)], Decimal(0))
    assert delta("rana_cost_usd_total", provider="second", model="m2") == pytest.approx(float(cost))
    assert delta("rana_request_duration_seconds_count", chain="main") == 1
    assert after[("rana_circuit_state", (("model", "m1"), ("provider", "first")))] == 0


def _samples(text: str) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_sdk_builds_the_exporter_the_otel_variables_name(monkeypatch):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    assert [type(e) for e in tracing._exporters()] == [OTLPSpanExporter]
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console,none")
    assert [type(e).__name__ for e in tracing._exporters()] == ["ConsoleSpanExporter"]
    tracing.tracing_reset()
    try:
        assert tracing.tracer() is not None
    finally:
        tracing.tracing_reset()
