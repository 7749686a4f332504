"""Running a batch: its pending rows through the chain's fallback service, `concurrency` at a time.

One Celery task runs a whole batch in one event loop: `concurrency` workers take the pending
rows in order from one shared iterator, each through `providers.services.complete` (source
"batch", the gateway key's prefix and budgets when posted through the API). Each result is
written as its row ends, only where the row is still pending, so a row is written once.

Idempotent under redelivery (acks_late): a task that runs again after its worker died loads
only the rows still pending, so finished rows are never run again (a row that was in flight
when the worker died has no result and runs again). The running task holds a lease on the
batch, heartbeating it every second; a delivery that finds the lease held (the broker handed
out the message twice) waits until the batch finishes or the heartbeat is older than
RANA_BATCH_LEASE_S (its runner died), then takes it over. The heartbeat also notices a
cancel: the workers stop taking rows.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from batches.models import Batch, BatchRow, BatchStatus, RowStatus
from providers.services import Caller, complete, redact, service_shutdown
from providers.types import (
    BudgetExceeded,
    ChainNotFound,
    CompletionResult,
    EngineError,
    InvalidRequest,
    NoUsableStep,
    calls_made,
)
from rana_site.db_busy import retry_when_busy

_HELD = object()  # _claim: another live runner holds the batch
_REFUSALS = {
    BudgetExceeded: "budget_exceeded",
    ChainNotFound: "chain_not_found",
    NoUsableStep: "no_usable_step",
    InvalidRequest: "invalid_request",
}


def _db(fn):
    """A database call from the batch's event loop, retried while the database is busy."""
    return sync_to_async(lambda *a: retry_when_busy(lambda: fn(*a)), thread_sensitive=True)


def batch_run(*, batch_id: uuid.UUID | str) -> dict[str, Any]:
    """Run what is left of a batch; returns how many rows this run wrote."""
    return asyncio.run(_run(uuid.UUID(str(batch_id))))


async def _run(batch_id: uuid.UUID) -> dict[str, Any]:
    token = uuid.uuid4().hex
    try:
        batch = await _claim_waiting(batch_id, token)
        if batch is None or batch.finished:
            return {"batch": str(batch_id), "rows_written": 0}
        rows = await _db(_pending_rows)(batch_id)
        run = _Run(batch, token)
        beat = asyncio.create_task(run.heartbeat())
        try:
            shared = iter(rows)
            await asyncio.gather(*(run.worker(shared) for _ in range(batch.concurrency)))
        finally:
            beat.cancel()
        await _db(_finish)(batch_id, token)
        return {"batch": str(batch_id), "rows_written": run.written}
    finally:
        await service_shutdown()  # this loop's upstream client closed, the ledger written


async def _claim_waiting(batch_id: uuid.UUID, token: str) -> Batch | None:
    while (claimed := await _db(_claim)(batch_id, token)) is _HELD:
        await asyncio.sleep(min(1.0, settings.RANA_BATCH_LEASE_S / 3))
    return claimed


def _claim(batch_id: uuid.UUID, token: str) -> Batch | object | None:
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(pk=batch_id).first()
        if batch is None or batch.finished:
            return batch
        now = timezone.now()
        held_for = (now - batch.heartbeat_at).total_seconds() if batch.heartbeat_at else None
        if batch.runner_token and held_for is not None and held_for < settings.RANA_BATCH_LEASE_S:
            return _HELD
        batch.runner_token, batch.heartbeat_at, batch.status = token, now, BatchStatus.RUNNING
        batch.started_at = batch.started_at or now
        batch.save(update_fields=["runner_token", "heartbeat_at", "status", "started_at"])
        return batch


def _pending_rows(batch_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = BatchRow.objects.filter(batch_id=batch_id, status=RowStatus.PENDING).order_by("index")
    return list(rows.values("id", "messages"))


def _beat(batch_id: uuid.UUID, token: str) -> bool:
    """Renew the lease; False when the batch was cancelled or another runner took it over."""
    held = Batch.objects.filter(pk=batch_id, runner_token=token, status=BatchStatus.RUNNING)
    return held.update(heartbeat_at=timezone.now()) == 1


def _row_write(row_id: int, fields: dict[str, Any]) -> bool:
    pending = BatchRow.objects.filter(pk=row_id, status=RowStatus.PENDING)
    return pending.update(**fields, finished_at=timezone.now()) == 1


def _finish(batch_id: uuid.UUID, token: str) -> None:
    with transaction.atomic():
        if BatchRow.objects.filter(batch_id=batch_id, status=RowStatus.PENDING).exists():
            return  # stopped early: cancelled, or the lease was lost to another runner
        Batch.objects.filter(pk=batch_id, runner_token=token, status=BatchStatus.RUNNING).update(
            status=BatchStatus.DONE, finished_at=timezone.now(), runner_token=""
        )


class _Run:
    def __init__(self, batch: Batch, token: str) -> None:
        self.batch_id, self.token, self.chain = batch.pk, token, batch.chain_slug
        self.params = {"max_tokens": batch.max_tokens} if batch.max_tokens else {}
        self.caller = Caller(
            source="batch",
            user_id=batch.created_by_id,
            gateway_key_prefix=batch.gateway_key_prefix,
            key_daily_budget_usd=batch.key_daily_budget_usd,
            key_monthly_budget_usd=batch.key_monthly_budget_usd,
        )
        self.stopped = False
        self.written = 0

    async def heartbeat(self) -> None:
        while not self.stopped:
            await asyncio.sleep(min(1.0, settings.RANA_BATCH_LEASE_S / 3))
            if not await _db(_beat)(self.batch_id, self.token):
                self.stopped = True

    async def worker(self, rows: Iterator[dict[str, Any]]) -> None:
        for row in rows:  # shared by every worker: each row is taken once
            if self.stopped:
                return
            fields = await self._answer(row["messages"])
            if await _db(_row_write)(row["id"], fields):
                self.written += 1
            else:
                self.stopped = True  # cancelled meanwhile

    async def _answer(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            result = await complete(
                chain=self.chain, messages=messages, params=self.params, caller=self.caller
            )
        except EngineError as exc:
            return _failure_fields(exc)
        except tuple(_REFUSALS) as exc:
            name = next(code for kind, code in _REFUSALS.items() if isinstance(exc, kind))
            return {"status": RowStatus.FAILED, "error": f"{name}: {redact(str(exc))}"}
        return _answer_fields(result)


def _answer_fields(result: CompletionResult) -> dict[str, Any]:
    return {
        "status": RowStatus.DONE,
        "answer": result.text,
        "provider_name": result.provider_name,
        "model": result.model,
        "attempts": calls_made(result.attempts),
        "latency_ms": result.latency_ms,
        "cost_usd": result.cost_usd,
        "request_id": result.request_id,
    }


def _failure_fields(exc: EngineError) -> dict[str, Any]:
    last = exc.attempts[-1] if exc.attempts else None
    return {
        "status": RowStatus.FAILED,
        "error": f"{exc.failure_class}: {redact(str(exc))}",
        "provider_name": last.provider_name if last else "",
        "model": last.model if last else "",
        "attempts": calls_made(exc.attempts),
        "latency_ms": sum(a.latency_ms for a in exc.attempts),
        "cost_usd": exc.cost_usd,
        "request_id": getattr(exc, "request_id", None),
    }
