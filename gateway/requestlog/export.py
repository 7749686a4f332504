"""CSV and JSONL exports of the filtered log, streamed one keyset page at a time."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from gateway.requestlog.query import COLUMNS, LogQuery, log_rows

HEADER = [name.replace("answered_provider__name", "answered_provider") for name in COLUMNS]
FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return value


def _values(row: dict[str, Any]) -> list[Any]:
    return [_plain(row[name]) for name in COLUMNS]


def csv_lines(q: LogQuery) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    for row in log_rows(q):
        writer.writerow(["" if v is None else v for v in _values(row)])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def jsonl_lines(q: LogQuery) -> Iterator[str]:
    for row in log_rows(q):
        yield json.dumps(dict(zip(HEADER, _values(row), strict=True))) + "\n"


def export_lines(q: LogQuery, fmt: str) -> Iterator[str]:
    return csv_lines(q) if fmt == "csv" else jsonl_lines(q)
