"""One request's ledger: turns engine records into Completion/Attempt rows as they happen."""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from providers.engine.cost import priced_attempt
from providers.engine.plan import StepPlan
from providers.engine.results import AttemptRecord, attempts_cost, calls_made
from providers.engine.types import ChatParams
from providers.models import Attempt, Completion, CompletionOutcome
from providers.services.recorder import PendingRow, get_recorder

CANCELLED = "cancelled"
DIED_DURING_CALL = "the serving process ended during this upstream call: no answer was recorded"
DIED_DURING_REQUEST = "the serving process ended before this request finished"


# Recorded as they are; tools, the tool choice and the response format by name (below); not
# `user`, the caller's own id for its end user.
_PARAMS_AS_SET = tuple(
    f.name
    for f in dataclasses.fields(ChatParams)
    if f.name not in {"tools", "response_format", "tool_choice", "user"}
)


def params_recorded(params: ChatParams) -> dict[str, Any]:
    """The parameters a request set (not the defaults), as its completion records them: tools
    by name, the tool choice by name, the response format by type and schema name."""
    kept: dict[str, Any] = {}
    for name in _PARAMS_AS_SET:
        value = getattr(params, name)
        if value is not None and value != ():
            kept[name] = list(value) if isinstance(value, tuple) else value
    if params.tools:
        kept["tools"] = [t.get("function", {}).get("name", "?") for t in params.tools]
    if params.tool_choice is not None:
        choice = params.tool_choice
        kept["tool_choice"] = choice if isinstance(choice, str) else choice.get("function", {}).get("name")
    if params.response_format:
        schema = params.response_format.get("json_schema") or {}
        kept["response_format"] = " ".join(
            filter(None, (params.response_format.get("type"), schema.get("name")))
        )
    return kept  # {}: none set (None on a completion: recorded before parameters were)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: the source and the user or gateway key (with the key's own budgets)."""

    source: str = "playground"
    user_id: int | None = None
    gateway_key_prefix: str = ""
    key_daily_budget_usd: Decimal | None = None
    key_monthly_budget_usd: Decimal | None = None


def attempt_fields(
    record: AttemptRecord, *, completion_id: uuid.UUID, chain_id: int | None, source: str, needs: str = ""
) -> dict[str, Any]:
    """An Attempt row's values, from the engine's record of it."""
    usage = record.usage
    return dict(
        completion_id=completion_id,
        started_at=record.started_at,
        chain_id=chain_id,
        source=source,
        step_position=record.step_position,
        provider_id=record.provider_id,
        provider_name=record.provider_name,
        provider_kind=record.provider_kind,
        model=record.model,
        retry_index=record.retry_index,
        outcome=record.outcome,
        http_status=record.http_status,
        retry_after_s=record.retry_after_s,
        latency_ms=record.latency_ms,
        ttft_ms=record.ttft_ms,
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        cached_tokens=usage.cached_tokens if usage else 0,
        reasoning_tokens=usage.reasoning_tokens if usage else 0,
        cost_usd=record.cost_usd,
        unpriced=record.unpriced,
        error_message=record.error_message[:4000],
        injected=record.injected,
        needs=needs,
    )


def completion_totals(attempts: list[AttemptRecord]) -> dict[str, Any]:
    """A Completion row's totals and answer, from its attempts (the one place they are summed)."""
    usage_rows = [a.usage for a in attempts if a.usage]
    success = next((a for a in reversed(attempts) if a.ok), None)
    first = attempts[0].step_position if attempts else None
    return {
        "input_tokens": sum(u.input_tokens for u in usage_rows),
        "output_tokens": sum(u.output_tokens for u in usage_rows),
        "cached_tokens": sum(u.cached_tokens for u in usage_rows),
        "reasoning_tokens": sum(u.reasoning_tokens for u in usage_rows),
        "cost_usd": attempts_cost(attempts),
        "unpriced": any(a.unpriced for a in attempts),
        "attempt_count": calls_made(attempts),
        "answered_provider_id": success.provider_id if success else None,
        "answered_model": success.model if success else "",
        "answered_step": success.step_position if success else None,
        "fallback_used": bool(success and success.step_position != first),
        "ttft_ms": success.ttft_ms if success else None,
        "injected": any(a.injected for a in attempts),
    }


@dataclass(slots=True)
class RequestLedger:
    request_id: uuid.UUID
    chain_id: int | None
    chain_slug: str
    caller: Caller
    stream: bool
    created_at: datetime = field(default_factory=timezone.now)
    started: float = field(default_factory=time.perf_counter)
    attempts: list[AttemptRecord] = field(default_factory=list)
    injected: bool = False
    needs: str = ""  # the capabilities the request needed, comma-separated ("images,tools")
    journaled_start: bool = False  # the provisional completion is in the journal
    route: dict[str, Any] | None = None  # the order of the steps and why (Route.as_dict)
    params: dict[str, Any] | None = None  # the parameters it set (params_recorded)

    def attempt(self, record: AttemptRecord) -> None:
        """The engine's on_attempt hook: the row goes to the recorder at once."""
        self.attempts.append(record)
        self.injected = self.injected or record.injected
        get_recorder().submit(PendingRow(Attempt, self._attempt_fields(record)))

    def attempt_started(self, step: StepPlan, retry: int, started_at: datetime) -> None:
        """The engine's on_attempt_start hook: journal what to write should this process die
        before the call (or the request) ends: a cancelled attempt, and a cancelled completion."""
        completion = None
        if not self.journaled_start:
            self.journaled_start = True
            completion = self._identity() | dict(
                outcome=CompletionOutcome.CANCELLED, error_class=CANCELLED, error_message=DIED_DURING_REQUEST
            )
        record = priced_attempt(step, retry, CANCELLED, started_at, 0.0, message=DIED_DURING_CALL)
        # attempt_fields puts completion_id first: the writer reads it off the line (journal_codec).
        fields = self._attempt_fields(record)
        fields["unpriced"] = step.price is None  # no usage yet: flagged by the step's price
        get_recorder().call_started(PendingRow(Attempt, fields), completion)

    def _attempt_fields(self, record: AttemptRecord) -> dict[str, Any]:
        return attempt_fields(
            record,
            completion_id=self.request_id,
            chain_id=self.chain_id,
            source=self.caller.source,
            needs=self.needs,
        )

    def _identity(self) -> dict[str, Any]:
        """What every completion row of this request says of who asked what, and when."""
        return dict(
            id=self.request_id,
            created_at=self.created_at,
            chain_id=self.chain_id,
            chain_slug=self.chain_slug,
            source=self.caller.source,
            user_id=self.caller.user_id,
            gateway_key_prefix=self.caller.gateway_key_prefix,
            stream=self.stream,
            needs=self.needs,
            route=self.route,
            params=self.params,
        )

    @property
    def cost_so_far(self) -> Decimal:
        return attempts_cost(self.attempts)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def finish(self, outcome: CompletionOutcome, **fields) -> PendingRow:
        """Write the completion row; totals come from the attempts unless given."""
        completion = PendingRow(Completion, self.completion_values(outcome, **fields))
        get_recorder().submit(completion)
        return completion

    def completion_values(self, outcome: CompletionOutcome, **fields) -> dict[str, Any]:
        """The completion row's values as of now (finish() writes them)."""
        values = completion_totals(self.attempts)
        values.update(fields)
        values.update(
            self._identity(),
            finished_at=timezone.now(),
            outcome=outcome,
            latency_ms=round(self.elapsed_ms(), 3),
            injected=self.injected,
        )
        return values
