"""Result files, CSV or JSONL, written a page of rows at a time (batches.selectors.batch_result_page)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from typing import Any

# One column per result field, in this order, in both formats.
COLUMNS = (
    "id", "prompt", "answer", "outcome", "error", "provider", "model", "attempts", "latency_ms",
    "cost_usd", "request_id",
)  # fmt: skip
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def result_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["input_id"],
        "prompt": row["prompt"],
        "answer": row["answer"],
        "outcome": row["status"],
        "error": row["error"],
        "provider": row["provider_name"],
        "model": row["model"],
        "attempts": row["attempts"],
        "latency_ms": round(row["latency_ms"]) if row["latency_ms"] is not None else None,
        "cost_usd": str(row["cost_usd"]),
        "request_id": str(row["request_id"]) if row["request_id"] else None,
    }


def csv_header() -> str:
    return _csv_lines([dict(zip(COLUMNS, COLUMNS, strict=True))])


def _csv_lines(records: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writerows(records)
    return out.getvalue()


def result_chunk(rows: list[dict[str, Any]], fmt: str) -> str:
    """A page of rows in the file's format (the CSV header is csv_header())."""
    records = [result_record(row) for row in rows]
    if fmt == "csv":
        return _csv_lines(records)
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def result_file(page: Callable[[int], list[dict[str, Any]]], fmt: str) -> Iterator[bytes]:
    """The whole file, page by page: `page(after_index)` returns the next rows."""
    if fmt == "csv":
        yield csv_header().encode()
    after = -1
    while rows := page(after):
        yield result_chunk(rows, fmt).encode()
        after = rows[-1]["index"]
