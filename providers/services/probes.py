"""Health probes: a one-token request, on a schedule, straight to one provider + model.

A provider with `probe_enabled` is probed every `probe_interval_s` seconds (the beat sends
providers.tasks.probes_run every 10 s; probes_claim() picks the providers due). Each probe is
one short user message with max_tokens 1, sent to the provider's `probe_model` (blank: the
model of its first chain step) through the engine as a one-step plan with no retries, so it
tests that provider alone, never a chain's fallback. It is recorded as any request is: a
Completion and its Attempt with source "probe" (no chain), through the ledger's recorder, so
health (which reads Attempt rows) counts it; and its outcome goes to the circuit breaker.

A probe bypasses an open circuit: it is how an open provider is found healthy again without
user traffic. It still asks the breaker first, so when the cooldown is over it is the
half-open probe (its failure re-opens the circuit for twice the cooldown); while the circuit is
open, its failure only adds to the count and its success closes the circuit, as any success
does. A circuit an operator opened by hand stays open whatever the probes say.

Two beats, or two workers, never send the same probe: the claim is a compare-and-set on
`Provider.last_probe_at` (an UPDATE ... WHERE last_probe_at = the value read), which only one
of them wins.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from dataclasses import asdict, dataclass

from django.utils import timezone

from providers.adapters import get_adapter
from providers.engine.fallback import EngineDeps, run
from providers.engine.plan import ChainPlan, StepPlan
from providers.engine.results import AllProvidersFailed, Cancelled
from providers.http_client import shared_client, shared_client_close
from providers.models import ChainStep, CompletionOutcome, Provider, Source
from providers.models.ledger import new_request_id
from providers.services.breaker import CircuitGate, get_breaker
from providers.services.inputs import messages_normalise, params_normalise
from providers.services.ledger import Caller, RequestLedger
from providers.services.plans import price_today, provider_config

log = logging.getLogger("rana.probes")

PROBE_MESSAGES = messages_normalise([{"role": "user", "content": "Reply with one word: ok"}])
PROBE_PARAMS = params_normalise({"max_tokens": 1})
PROBE_TIMEOUT_S = 10.0  # one probe's whole call
PROBE_SLACK_S = 1.0  # due this early still counts: a 10 s tick keeps a 60 s interval at 60 s, not 70
PROBE_CALLER = Caller(source=Source.PROBE)


@dataclass(frozen=True, slots=True)
class ProbeReport:
    provider_id: int
    model: str
    outcome: str  # the attempt's: success or a failure class
    request_id: uuid.UUID
    latency_ms: float | None = None
    http_status: int | None = None
    error: str = ""

    def as_dict(self) -> dict:
        return {**asdict(self), "request_id": str(self.request_id)}


def probes_claim(*, now: dt.datetime | None = None) -> list[int]:
    """The ids of the enabled providers whose probe is due, each claimed for this caller alone
    (last_probe_at set to `now`): of callers racing for one probe, exactly one gets it."""
    now = now or timezone.now()
    due = Provider.objects.filter(enabled=True, probe_enabled=True).values_list(
        "pk", "probe_interval_s", "last_probe_at"
    )
    claimed = []
    for pk, interval_s, last in due:
        if last is not None and now - last < dt.timedelta(seconds=interval_s - PROBE_SLACK_S):
            continue
        if Provider.objects.filter(pk=pk, last_probe_at=last).update(last_probe_at=now):
            claimed.append(pk)
    return claimed


def probe_model(provider: Provider) -> str:
    """The model a provider's probe asks: its probe_model, else its first chain step's ("": none)."""
    if provider.probe_model:
        return provider.probe_model
    steps = ChainStep.objects.filter(provider=provider, enabled=True).order_by("position", "chain_id", "id")
    return steps.values_list("model", flat=True).first() or ""


def probe_step(provider: Provider) -> StepPlan | None:
    """The one step a probe of this provider is: no retries, PROBE_TIMEOUT_S; None: no model."""
    model = probe_model(provider)
    if not model:
        log.warning("provider %s has probes on but no model to probe: set its probe model", provider.name)
        return None
    return StepPlan(
        position=0,
        provider=provider_config(provider),
        model=model,
        retries=0,
        timeout_s=PROBE_TIMEOUT_S,
        backoff_base_s=0.0,
        price=price_today(provider.kind, model),
        first_token_timeout_s=PROBE_TIMEOUT_S,
    )


def _probe_plan(step: StepPlan) -> ChainPlan:
    return ChainPlan(
        slug="", steps=(step,), max_attempts=1, deadline_s=PROBE_TIMEOUT_S, max_retry_after_s=0.0
    )


def _bypass(gate: CircuitGate, step: StepPlan) -> bool:
    """The engine's is_circuit_open for a probe: take the half-open lease when there is one to
    take (so a failure re-opens the circuit as a probe's does), and never skip."""
    gate.is_open(step)
    return False


async def probe_send(step: StepPlan) -> ProbeReport:
    """Send one probe; its Completion and Attempt go to the ledger, its outcome to the breaker."""
    ledger = RequestLedger(new_request_id(), None, "", PROBE_CALLER, False)
    gate = get_breaker().gate()

    def on_attempt(record) -> None:
        try:
            ledger.attempt(record)
        finally:
            gate.record(record)

    deps = EngineDeps(
        adapter_for=get_adapter,
        client=shared_client(),
        on_attempt=on_attempt,
        on_attempt_start=ledger.attempt_started,
        is_circuit_open=lambda s: _bypass(gate, s),
        release_probe=gate.release_probe,
    )
    try:
        await run(_probe_plan(step), PROBE_MESSAGES, PROBE_PARAMS, deps)
    except AllProvidersFailed as exc:
        ledger.finish(
            CompletionOutcome.FAILED, error_class=str(exc.failure_class), error_message=str(exc)[:4000]
        )
    except (Cancelled, asyncio.CancelledError):
        ledger.finish(
            CompletionOutcome.CANCELLED, error_class="cancelled", error_message="the probe was cancelled"
        )
        raise
    else:
        ledger.finish(CompletionOutcome.SUCCESS)
    last = ledger.attempts[-1] if ledger.attempts else None
    if last is None:
        return ProbeReport(step.provider.id, step.model, "cancelled", ledger.request_id)
    return ProbeReport(
        step.provider.id,
        step.model,
        str(last.outcome),
        ledger.request_id,
        latency_ms=last.latency_ms,
        http_status=last.http_status,
        error=last.error_message,
    )


async def _send_all(steps: list[StepPlan]) -> list[ProbeReport]:
    try:
        sent = await asyncio.gather(*(probe_send(step) for step in steps), return_exceptions=True)
    finally:
        await shared_client_close()  # this loop's client: the next run has a loop of its own
    reports = []
    for step, result in zip(steps, sent, strict=True):
        if isinstance(result, BaseException):
            log.error("the probe of %s / %s failed to run", step.provider.name, step.model, exc_info=result)
        else:
            reports.append(result)
    return reports


def probes_send_due(*, now: dt.datetime | None = None) -> list[ProbeReport]:
    """Claim the probes that are due and send them, at once (blocking: for the Celery task)."""
    claimed = probes_claim(now=now)
    steps = [step for p in Provider.objects.filter(pk__in=claimed) if (step := probe_step(p)) is not None]
    return asyncio.run(_send_all(steps)) if steps else []


def provider_test_connection(*, provider: Provider) -> ProbeReport | None:
    """The admin's "test connection": one probe of this provider now (its probe model, max_tokens
    1, through its real adapter and the guarded client), whether or not probes are on for it.
    It is recorded as any probe is (a `probe` completion and attempt, the breaker told), so the
    ledger shows the test too. None: the provider has no model to ask (see probe_model)."""
    step = probe_step(provider)
    if step is None:
        return None
    return asyncio.run(_send_one(step))


async def _send_one(step: StepPlan) -> ProbeReport:
    try:
        return await probe_send(step)
    finally:
        await shared_client_close()


def probe_report_words(report: ProbeReport | None, *, provider_name: str) -> tuple[bool, str]:
    """(worked, what happened in words) for a test connection."""
    if report is None:
        return False, (
            f"Could not test “{provider_name}”: there is no model to ask. "
            "Set its probe model, or use it in a chain step."
        )
    latency = f" in {report.latency_ms:.1f} ms" if report.latency_ms is not None else ""
    if report.outcome == "success":
        return (
            True,
            f"“{provider_name}” answered: model {report.model} replied{latency} "
            f"(request {report.request_id}).",
        )
    status = f", HTTP {report.http_status}" if report.http_status else ""
    error = f": {report.error[:300]}" if report.error else ""
    return False, (
        f"“{provider_name}” failed the test: model {report.model} — {report.outcome}{status}{latency}{error} "
        f"(request {report.request_id})."
    )
