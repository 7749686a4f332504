"""The batches spoke's reads: a batch's progress, recent batches, and its results page by page."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum
from django.utils import timezone

from batches.models import Batch, BatchRow, RowStatus

RESULT_PAGE = 500
RESULT_FIELDS = (
    "index", "input_id", "prompt", "status", "answer", "error", "provider_name", "model",
    "attempts", "latency_ms", "cost_usd", "request_id",
)  # fmt: skip


def batch_get(*, batch_id: uuid.UUID | str, gateway_key_prefix: str | None = None) -> Batch | None:
    """The batch, or None; with a key prefix, only a batch that key posted."""
    batches = Batch.objects.all()
    if gateway_key_prefix is not None:
        batches = batches.filter(gateway_key_prefix=gateway_key_prefix)
    try:
        return batches.filter(pk=uuid.UUID(str(batch_id))).first()
    except ValueError:
        return None


def batches_recent(*, limit: int = 20) -> list[Batch]:
    return list(Batch.objects.order_by("-created_at")[:limit])


def batch_progress(batch: Batch) -> dict[str, Any]:
    """Counts, rate (rows a second since it started), ETA and the cost so far, as plain data."""
    counts = BatchRow.objects.filter(batch=batch).aggregate(
        done=Count("id", filter=Q(status=RowStatus.DONE)),
        failed=Count("id", filter=Q(status=RowStatus.FAILED)),
        cancelled=Count("id", filter=Q(status=RowStatus.CANCELLED)),
        cost=Sum("cost_usd"),
    )
    finished = counts["done"] + counts["failed"]
    remaining = batch.total_rows - finished - counts["cancelled"]
    end = batch.finished_at or timezone.now()
    elapsed = (end - batch.started_at).total_seconds() if batch.started_at else 0.0
    rate = finished / elapsed if elapsed > 0 and finished else 0.0
    return {
        "status": batch.status,
        "total": batch.total_rows,
        "done": counts["done"],
        "failed": counts["failed"],
        "cancelled": counts["cancelled"],
        "remaining": remaining,
        "percent": round(100 * (batch.total_rows - remaining) / max(batch.total_rows, 1)),
        "rate_per_s": round(rate, 2),
        "eta_s": round(remaining / rate) if rate and remaining and not batch.finished else None,
        "cost_usd": counts["cost"] or Decimal(0),
        "elapsed_s": round(elapsed, 1),
    }


def batch_result_page(*, batch_id: uuid.UUID, after_index: int = -1) -> list[dict[str, Any]]:
    """The next RESULT_PAGE rows after `after_index`, in input order (keyset paging: a result
    file is streamed a page at a time, never built in memory)."""
    rows = BatchRow.objects.filter(batch_id=batch_id, index__gt=after_index).order_by("index")
    return list(rows.values(*RESULT_FIELDS)[:RESULT_PAGE])
