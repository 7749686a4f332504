"""OpenTelemetry traces of requests, off unless the standard OTEL_* variables ask for them.

On when OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_TRACES_EXPORTER
(other than "none") is set and OTEL_SDK_DISABLED is not "true". The SDK reads the rest itself:
OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES (the resource), OTEL_EXPORTER_OTLP_* (where and
how the OTLP exporter sends, over HTTP/protobuf), OTEL_BSP_* (the batch processor),
OTEL_TRACES_SAMPLER(_ARG). Exporters are found by the SDK's own entry points
(`opentelemetry_traces_exporter`: otlp, console).

Spans are made when a request ends, from its ledger (start and end times as they were): one
`chat {model}` span per request with GenAI semantic-convention attributes and rana.*
attributes, and one child span per attempt. They carry names, numbers and classes only, never
error messages (an upstream may echo the prompt in them), and prompt or answer text only for
chains that keep bodies: then the request span has `gen_ai.input.messages` and
`gen_ai.output.messages` (JSON, as masked and cut for the body row).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from providers.engine.results import AttemptRecord, calls_made

_tracer: Any = None  # None: not decided yet; False: off
_provider: Any = None
OPERATION = "chat"


def tracing_wanted(environ: dict[str, str] | os._Environ = os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return any(environ.get(name) for name in endpoints)


def _exporters() -> list[Any]:
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    found = []
    for name in names:
        if name == "none":
            continue
        points = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not points and name == "otlp":  # the HTTP/protobuf exporter is the one installed
            points = entry_points(group="opentelemetry_traces_exporter", name="otlp_proto_http")
        if not points:
            raise RuntimeError(f"OTEL_TRACES_EXPORTER: no exporter named {name!r} is installed")
        found.append(next(iter(points)).load()())
    return found


def tracing_configure(provider: Any = None) -> None:
    """Use `provider` (a TracerProvider; tests pass one with an in-memory exporter), or build one
    from the environment; None with tracing not wanted turns tracing off."""
    global _tracer, _provider
    if provider is None:
        if not tracing_wanted():
            _tracer = False
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": _service_name()}))
        for exporter in _exporters():
            provider.add_span_processor(BatchSpanProcessor(exporter))
    _tracer, _provider = provider.get_tracer("rana"), provider


def tracing_reset() -> None:
    global _tracer, _provider
    _tracer = _provider = None


def tracing_flush(timeout_s: float = 5.0) -> None:
    """Export the spans still queued (a graceful stop)."""
    if _provider is not None:
        _provider.force_flush(int(timeout_s * 1000))


def _service_name() -> str:
    return os.environ.get("OTEL_SERVICE_NAME") or "rana"


def tracer() -> Any:
    if _tracer is None:
        tracing_configure()
    return _tracer or None


def _ns(when: dt.datetime) -> int:
    return int(when.timestamp() * 1e9)


def request_traced(
    values: dict[str, Any],
    attempts: Sequence[AttemptRecord],
    *,
    response_model: str | None = None,
    body: dict[str, Any] | None = None,
) -> None:
    """The request's span and one child per attempt (`values`: its completion row's values;
    `body`: its kept body's values, None when its chain keeps none)."""
    spans = tracer()
    if spans is None:
        return
    from opentelemetry import trace

    requested = attempts[0].model if attempts else (values.get("answered_model") or "")
    answered = values.get("answered_model") or ""
    start = _ns(values["created_at"])
    attributes = {
        "gen_ai.operation.name": OPERATION,
        "gen_ai.request.model": requested,
        "gen_ai.usage.input_tokens": int(values.get("input_tokens") or 0),
        "gen_ai.usage.output_tokens": int(values.get("output_tokens") or 0),
        "rana.chain": values.get("chain_slug") or "",
        "rana.request_id": str(values["id"]),
        "rana.source": values.get("source") or "",
        "rana.outcome": str(values["outcome"]),
        "rana.attempts": calls_made(attempts),
        "rana.fallback": bool(values.get("fallback_used")),
        "rana.cost_usd": float(values.get("cost_usd") or 0),
        "rana.stream": bool(values.get("stream")),
    }
    if answered or response_model:
        attributes["gen_ai.response.model"] = response_model or answered
    answering = next((a for a in reversed(attempts) if a.ok), None)
    if answering is not None:
        attributes["gen_ai.provider.name"] = answering.provider_kind
        attributes["rana.provider"] = answering.provider_name
    if values.get("error_class"):
        attributes["error.type"] = str(values["error_class"])
    if body is not None:
        attributes.update(_body_attributes(body))
    name = f"{OPERATION} {requested}".strip()
    span = spans.start_span(name, kind=trace.SpanKind.SERVER, start_time=start, attributes=attributes)
    outcome = str(values["outcome"])
    if outcome not in ("success", "cache_hit"):
        span.set_status(trace.Status(trace.StatusCode.ERROR, str(values.get("error_class") or outcome)))
    context = trace.set_span_in_context(span)
    for attempt in attempts:
        _attempt_span(spans, context, attempt)
    span.end(end_time=_ns(values["finished_at"]))


def _body_attributes(body: dict[str, Any]) -> dict[str, str]:
    """The GenAI conventions' gen_ai.input.messages / gen_ai.output.messages (JSON text:
    [{"role", "parts": [{"type": "text" | "tool_call" | "tool_call_response", ...}]}]), from the
    body row's values, so masked and cut as it is."""
    inputs = []
    for message in json.loads(body["messages"]):
        parts: list[dict[str, Any]] = []
        if message.get("role") == "tool":
            response = {"type": "tool_call_response", "response": message["content"]}
            parts.append(response | {"id": message.get("tool_call_id")})
        elif message.get("content"):
            parts.append({"type": "text", "content": message["content"]})
        parts += _call_parts(message.get("tool_calls"))
        inputs.append({"role": message["role"], "parts": parts})
    answer = [{"type": "text", "content": body["answer"]}] if body.get("answer") else []
    answer += _call_parts(body.get("answer_tool_calls"))
    output = [{"role": "assistant", "parts": answer}] if answer else []
    return {"gen_ai.input.messages": json.dumps(inputs), "gen_ai.output.messages": json.dumps(output)}


def _call_parts(calls: list[dict[str, str]] | None) -> list[dict[str, Any]]:
    return [{"type": "tool_call", "name": c["name"], "arguments": c["arguments"]} for c in calls or ()]


def _attempt_span(spans: Any, context: Any, attempt: AttemptRecord) -> None:
    from opentelemetry import trace

    start = _ns(attempt.started_at)
    attributes = {
        "gen_ai.operation.name": OPERATION,
        "gen_ai.provider.name": attempt.provider_kind,
        "gen_ai.request.model": attempt.model,
        "rana.provider": attempt.provider_name,
        "rana.step": attempt.step_position,
        "rana.retry": attempt.retry_index,
        "rana.outcome": str(attempt.outcome),
        "rana.latency_ms": float(attempt.latency_ms),
    }
    if attempt.http_status is not None:
        attributes["http.response.status_code"] = attempt.http_status
    if attempt.ttft_ms is not None:
        attributes["rana.ttft_ms"] = float(attempt.ttft_ms)
    if attempt.usage is not None:
        attributes["gen_ai.usage.input_tokens"] = attempt.usage.input_tokens
        attributes["gen_ai.usage.output_tokens"] = attempt.usage.output_tokens
    if not attempt.ok:
        attributes["error.type"] = str(attempt.outcome)
    span = spans.start_span(
        f"{OPERATION} {attempt.model}",
        context=context,
        kind=trace.SpanKind.CLIENT,
        start_time=start,
        attributes=attributes,
    )
    if not attempt.ok:
        span.set_status(trace.Status(trace.StatusCode.ERROR, str(attempt.outcome)))
    span.end(end_time=start + int(attempt.latency_ms * 1e6))
