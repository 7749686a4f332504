"""Making a batch from an uploaded file, and cancelling one."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from batches.models import Batch, BatchRow, BatchStatus, RowStatus
from batches.parsing import BatchFileError, BatchInput, batch_file_parse
from providers.services import messages_normalise
from providers.types import InvalidRequest

MIN_CONCURRENCY, MAX_CONCURRENCY, DEFAULT_CONCURRENCY = 1, 16, 4
MAX_TOKENS_LIMIT = 100_000


class BatchInvalid(ValueError):
    """What was sent cannot become a batch; `field` names the part at fault (file, concurrency, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class BatchOwner:
    """Who the batch's prompts run for: a user in the UI, or a gateway key through the API."""

    user_id: int | None = None
    gateway_key_prefix: str = ""
    key_daily_budget_usd: Decimal | None = None
    key_monthly_budget_usd: Decimal | None = None


def _checked_inputs(data: bytes, filename: str, declared: str | None) -> list[BatchInput]:
    try:
        inputs = batch_file_parse(data, filename=filename, declared=declared)
    except BatchFileError as exc:
        raise BatchInvalid("file", str(exc)) from None
    for number, item in enumerate(inputs, start=1):
        try:
            messages_normalise(item.messages)
        except InvalidRequest as exc:
            raise BatchInvalid("file", f"Prompt {number} (id {item.input_id}): {exc}") from None
    return inputs


def _checked_numbers(concurrency: int | None, max_tokens: int | None) -> int:
    concurrency = DEFAULT_CONCURRENCY if concurrency is None else concurrency
    if not MIN_CONCURRENCY <= concurrency <= MAX_CONCURRENCY:
        raise BatchInvalid("concurrency", f"concurrency must be {MIN_CONCURRENCY} to {MAX_CONCURRENCY}.")
    if max_tokens is not None and not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise BatchInvalid("max_tokens", f"max_tokens must be 1 to {MAX_TOKENS_LIMIT:,}.")
    return concurrency


def batch_create(
    *,
    data: bytes,
    filename: str,
    chain_slug: str,
    owner: BatchOwner,
    concurrency: int | None = None,
    max_tokens: int | None = None,
    declared_format: str | None = None,
) -> Batch:
    """Validate the file (raises BatchInvalid), store one pending row per prompt, and run the
    batch in the background once the rows are committed."""
    concurrency = _checked_numbers(concurrency, max_tokens)
    inputs = _checked_inputs(data, filename, declared_format)
    with transaction.atomic():
        batch = Batch.objects.create(
            name=filename[:200],
            chain_slug=chain_slug,
            concurrency=concurrency,
            max_tokens=max_tokens,
            total_rows=len(inputs),
            created_by_id=owner.user_id,
            gateway_key_prefix=owner.gateway_key_prefix,
            key_daily_budget_usd=owner.key_daily_budget_usd,
            key_monthly_budget_usd=owner.key_monthly_budget_usd,
        )
        BatchRow.objects.bulk_create(
            (_row(batch, index, item) for index, item in enumerate(inputs)),
            batch_size=1000,
        )
        transaction.on_commit(lambda: _enqueue(batch.id))
    return batch


def _row(batch: Batch, index: int, item: BatchInput) -> BatchRow:
    return BatchRow(
        batch=batch, index=index, input_id=item.input_id[:200], prompt=item.prompt, messages=item.messages
    )


def _enqueue(batch_id: uuid.UUID) -> None:
    from batches.tasks import batch_run_task  # the task imports this package

    batch_run_task.delay(str(batch_id))


def batch_cancel(*, batch_id: uuid.UUID) -> Batch:
    """Stop a batch: its pending rows become cancelled (rows in flight too: their answers are
    not written), its status cancelled. Idempotent; a finished batch is left as it is."""
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(pk=batch_id)
        if batch.finished:
            return batch
        now = timezone.now()
        batch.rows.filter(status=RowStatus.PENDING).update(status=RowStatus.CANCELLED, finished_at=now)
        batch.status, batch.finished_at = BatchStatus.CANCELLED, now
        batch.save(update_fields=["status", "finished_at"])
    return batch
