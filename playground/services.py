"""Playground runs: create one, then execute it once through the providers service.

Every prompt goes through the providers service (complete or stream) with
caller=Caller(source="playground", user_id=...) and the run's injected faults. A run is
executed at most once: `run_claim` moves it from pending to running atomically.
Every error ends in words on the run (`error_message`), never in an exception to the view.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any

from django.db import DatabaseError
from django.utils import timezone

from providers.services import Caller, FaultSpec, complete, stream
from providers.types import (
    AllProvidersFailed,
    BudgetExceeded,
    Cancelled,
    ChainNotFound,
    InvalidRequest,
    NoUsableStep,
    StepOutOfRange,
    StreamInterrupted,
)
from rana_site.db_busy import BUSY_MESSAGE, aretry_when_busy, is_database_busy

from . import messages as shapes
from .models import PlaygroundRun, RunStatus
from .words import needs_unserved, retry_later_words

log = logging.getLogger("rana.playground")

CANCELLED_WORDS = "Stopped: the request was cancelled and the upstream call closed."


def run_messages(
    *, parent: PlaygroundRun | None, system: str, message: str, image_url: str | None = None
) -> list[dict[str, Any]]:
    """The conversation to send: the parent's thread and answer, then the new message (with
    the attached image as an image_url part). A parent's unanswered tool calls are left out:
    only their text goes on, since a tool call must be followed by its results."""
    messages = [m for m in parent.messages if m["role"] != "system"] if parent else []
    if parent is not None and parent.answer:
        messages.append({"role": "assistant", "content": parent.answer})
    head = [{"role": "system", "content": system}] if system.strip() else []
    return [*head, *messages, shapes.user_message(message, image_url)]


def tool_result_messages(*, parent: PlaygroundRun, results: list[str]) -> list[dict[str, Any]]:
    """The parent's conversation, its assistant turn with the tool calls, then one tool
    message per call with the result typed for it."""
    return [
        *parent.messages,
        shapes.assistant_turn(parent.answer, parent.tool_calls),
        *shapes.tool_messages(parent.tool_calls, results),
    ]


def run_tool_results(*, parent: PlaygroundRun, results: list[str]) -> PlaygroundRun:
    """A new pending run that answers the parent's tool calls and continues its thread, with
    the same chain, parameters (tools included) and streaming choice."""
    return run_create(
        user_id=parent.user_id,
        chain_slug=parent.chain_slug,
        messages=tool_result_messages(parent=parent, results=results),
        params=parent.params,
        stream=parent.stream,
        parent=parent,
    )


def run_create(
    *,
    user_id: int,
    chain_slug: str,
    messages: list[dict[str, Any]],
    params: Mapping[str, Any],
    faults: list[FaultSpec] = (),  # type: ignore[assignment]
    stream: bool = True,
    parent: PlaygroundRun | None = None,
    compare_group: uuid.UUID | None = None,
) -> PlaygroundRun:
    return PlaygroundRun.objects.create(
        user_id=user_id,
        parent=parent,
        compare_group=compare_group,
        chain_slug=chain_slug,
        messages=messages,
        title=shapes.title_of(messages),
        params=dict(params),
        faults=[spec.as_dict() for spec in faults],
        stream=stream,
    )


def run_replay(*, run: PlaygroundRun) -> PlaygroundRun:
    """A new pending run with the same chain, conversation, parameters and faults."""
    return PlaygroundRun.objects.create(
        user_id=run.user_id,
        parent=run.parent,
        chain_slug=run.chain_slug,
        messages=run.messages,
        title=run.title or shapes.title_of(run.messages),
        params=run.params,
        faults=run.faults,
        stream=run.stream,
    )


async def run_claim(*, run_id: uuid.UUID, user_id: int) -> PlaygroundRun | None:
    """The user's pending run, now marked running; None if absent, not theirs or already started."""
    pending = PlaygroundRun.objects.filter(pk=run_id, user_id=user_id, status=RunStatus.PENDING)
    claimed = await aretry_when_busy(lambda: pending.aupdate(status=RunStatus.RUNNING))
    if not claimed:
        return None
    return await PlaygroundRun.objects.aget(pk=run_id)


def _faults(run: PlaygroundRun) -> list[FaultSpec]:
    return [FaultSpec.from_dict(row) for row in run.faults]


def _caller(run: PlaygroundRun) -> Caller:
    return Caller(source="playground", user_id=run.user_id)


def _money(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.01'))}"


def error_words(exc: BaseException) -> tuple[str, str]:
    """(run outcome, what to tell the user) for an error from the providers service."""
    if isinstance(exc, InvalidRequest):
        return "invalid", f"Invalid {exc.field}: {exc.message}."
    if isinstance(exc, ChainNotFound):
        return "invalid", f"Chain: {exc}."
    if isinstance(exc, NoUsableStep):
        why = str(exc)
        return "invalid", f"{why[:1].upper()}{why[1:]}. No provider was called."
    if isinstance(exc, StepOutOfRange):
        return "invalid", f"Fault injection: {exc}."
    if isinstance(exc, BudgetExceeded):
        hours = max(1, round(exc.retry_after_s / 3600))
        return "budget_blocked", (
            f"Budget reached: the {exc.scope} budget ({_money(exc.spent)} spent of {_money(exc.limit)}). "
            f"No provider was called. It resets in about {hours} hour(s)."
        )
    if isinstance(exc, StreamInterrupted):
        return "stream_interrupted", (
            "The stream was interrupted after the first tokens, so no fallback was possible. "
            "The partial answer is kept."
        )
    if isinstance(exc, AllProvidersFailed) and exc.failure_class == "capability_skipped":
        needs = needs_unserved(a.error_message for a in exc.attempts)
        what = f" (it needs {' and '.join(needs)})" if needs else ""
        return "failed", (
            f"No step of this chain can serve this request{what}: each step was skipped without a call. "
            "The timeline below says why."
        )
    if isinstance(exc, AllProvidersFailed) and exc.retry_later is not None:
        return "failed", f"{retry_later_words(exc.retry_later)}. Every attempt is listed below."
    if isinstance(exc, AllProvidersFailed):
        head = "The overall deadline passed" if exc.deadline_exceeded else "All providers failed"
        return "failed", f"{head} (last failure: {exc.failure_class}). Every attempt is listed below."
    if isinstance(exc, Cancelled | asyncio.CancelledError | GeneratorExit):
        return "cancelled", CANCELLED_WORDS
    if is_database_busy(exc):
        return "error", BUSY_MESSAGE
    return "error", "Something went wrong on the server. It was logged; please try again."


UNSAVED_WORDS = (
    "The answer is shown here, but the run could not be saved: the database stayed busy. "
    "The attempts are in the ledger; send the prompt again to keep it in your history."
)


async def run_finish(
    run: PlaygroundRun,
    *,
    outcome: str,
    answer: str = "",
    error: str = "",
    completion_id: Any = None,
    tool_calls: list[dict[str, Any]] | None = None,
) -> PlaygroundRun:
    """Record how the run ended. If the database stays busy, the user is told so on the run
    (it still shows the answer) and the run row stays as it was: no half-written state."""
    run.status, run.outcome, run.answer, run.error_message = RunStatus.DONE, outcome, answer, error
    run.tool_calls = tool_calls or []
    run.completion_id = completion_id or run.completion_id
    run.finished_at = timezone.now()
    fields = dict(
        status=run.status,
        outcome=outcome,
        answer=answer,
        tool_calls=run.tool_calls,
        error_message=error,
        completion_id=run.completion_id,
        finished_at=run.finished_at,
    )
    try:
        await aretry_when_busy(lambda: PlaygroundRun.objects.filter(pk=run.pk).aupdate(**fields))
    except DatabaseError as exc:
        if not is_database_busy(exc):
            raise
        log.error("playground run %s could not be saved: %s", run.pk, exc)
        run.outcome = "error"
        run.error_message = f"{error} {UNSAVED_WORDS}".strip()
    return run


async def _finish_with_error(
    run: PlaygroundRun, exc: BaseException, answer: str = "", tool_calls: list[dict[str, Any]] | None = None
) -> PlaygroundRun:
    outcome, words = error_words(exc)
    if outcome == "error":
        log.error("playground run %s failed unexpectedly", run.pk, exc_info=exc)
    return await run_finish(
        run,
        outcome=outcome,
        answer=answer,
        error=words,
        completion_id=getattr(exc, "request_id", None),
        tool_calls=tool_calls,
    )


async def run_execute(run: PlaygroundRun) -> PlaygroundRun:
    """Run a claimed run without streaming; the run is finished when this returns."""
    try:
        result = await complete(
            chain=run.chain_slug,
            messages=run.messages,
            params=run.params,
            caller=_caller(run),
            faults=_faults(run),
        )
    except asyncio.CancelledError as exc:
        await _finish_with_error(run, exc)
        raise
    except Exception as exc:
        return await _finish_with_error(run, exc)
    outcome = "cache_hit" if result.cache_hit else "success"
    return await run_finish(
        run,
        outcome=outcome,
        answer=result.text,
        completion_id=result.request_id,
        tool_calls=shapes.tool_call_dicts(result.tool_calls),
    )


async def run_stream_tokens(run: PlaygroundRun) -> AsyncIterator[str]:
    """Run a claimed run as a stream: yields text as it arrives; the run is finished at the end,
    with the tool calls the answer made (their streamed pieces put back together by index).

    Closing the iterator early (or cancelling the task) closes the upstream; the service
    records the completion as cancelled and the run says so.
    """
    try:
        streamed = await stream(
            chain=run.chain_slug,
            messages=run.messages,
            params=run.params,
            caller=_caller(run),
            faults=_faults(run),
        )
    except Exception as exc:
        await _finish_with_error(run, exc)
        return
    run.completion_id = streamed.request_id
    parts: list[str] = []
    calls = shapes.ToolCallAssembly()
    try:
        async for event in streamed:
            if event.tool_calls:
                calls.add(event.tool_calls)
            if event.text:
                parts.append(event.text)
                yield event.text
    except (asyncio.CancelledError, GeneratorExit) as exc:
        await streamed.aclose()
        await _finish_with_error(run, exc, "".join(parts), calls.as_dicts())
        raise
    except Exception as exc:
        await _finish_with_error(run, exc, "".join(parts), calls.as_dicts())
        return
    finally:
        await streamed.aclose()
    outcome = "cache_hit" if streamed.result and streamed.result.cache_hit else "success"
    await run_finish(
        run,
        outcome=outcome,
        answer="".join(parts),
        completion_id=streamed.request_id,
        tool_calls=calls.as_dicts(),
    )
