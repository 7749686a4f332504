"""Fast plain inserts of many ledger rows: COPY on PostgreSQL, executemany on SQLite.

Only for generated data (rana_synth_ledger): values are converted the way Django stores them
(naive UTC text datetimes and hex UUIDs on SQLite), without Django's per-value machinery.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from django.db import connection, models


def _sqlite_datetime(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")


_SQLITE_CONVERT: tuple[tuple[type, Callable[[Any], Any]], ...] = (
    (dt.datetime, _sqlite_datetime),
    (uuid.UUID, lambda value: value.hex),
    (Decimal, str),
)


def _sqlite_rows(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Rows with datetimes, UUIDs and decimals as SQLite stores them. Each column holds one
    type (or None), so the conversion is chosen per column, from its first value."""
    converters = []
    for index in range(len(rows[0])):
        sample = next((row[index] for row in rows if row[index] is not None), None)
        convert = next((c for kind, c in _SQLITE_CONVERT if isinstance(sample, kind)), None)
        if convert is not None:
            converters.append((index, convert))
    out = []
    for row in rows:
        values = list(row)
        for index, convert in converters:
            if values[index] is not None:
                values[index] = convert(values[index])
        out.append(values)
    return out


def bulk_insert(model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert rows (tuples of Python values in `fields` order) into the model's table."""
    if not rows:
        return
    columns = [model._meta.get_field(name).column for name in fields]
    table = connection.ops.quote_name(model._meta.db_table)
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(columns))
            sql = f"INSERT INTO {table} ({quoted}) VALUES ({marks})"  # noqa: S608 (names from model metadata)
            cursor.executemany(sql, _sqlite_rows(rows))
