"""Adding to rollup rows: INSERT ... ON CONFLICT DO UPDATE SET m = m + excluded.m.

The same statement works on SQLite (3.24+) and PostgreSQL, and is safe with several writers:
two processes adding to one bucket both land, whichever commits first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from django.db import connection, models

from dashboards.rollups.specs import LedgerSpec, Row

_BATCH = 500


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _column(model: type[models.Model], name: str) -> models.Field:
    return model._meta.get_field(name)


def increment_sql(model: type[models.Model], keys: Sequence[str], measures: Sequence[str]) -> str:
    table = _quote(model._meta.db_table)
    columns = [*keys, *measures]
    quoted = ", ".join(_quote(_column(model, c).column) for c in columns)
    placeholders = ", ".join(["%s"] * len(columns))
    conflict = ", ".join(_quote(_column(model, k).column) for k in keys)
    updates = ", ".join(
        f"{_quote(col)} = {table}.{_quote(col)} + excluded.{_quote(col)}"
        for col in (_column(model, m).column for m in measures)
    )
    return (
        f"INSERT INTO {table} ({quoted}) VALUES ({placeholders}) "  # noqa: S608 (names from model metadata; values are parameters)
        f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
    )


_PLAIN = (models.IntegerField, models.CharField, models.FloatField)


def _adapters(model: type[models.Model], columns: Sequence[str]) -> list:
    """Per column: None where the driver takes the Python value as is, else Django's adapter."""
    adapters = []
    for name in columns:
        field = _column(model, name)
        plain = isinstance(field, _PLAIN) and not isinstance(field, models.BooleanField)
        adapters.append(None if plain else (lambda v, f=field: f.get_db_prep_save(v, connection)))
    return adapters


def _params(adapters: list, values: Sequence[Any]) -> list[Any]:
    return [v if a is None else a(v) for a, v in zip(adapters, values, strict=True)]


@lru_cache(maxsize=64)
def _statement(model: type[models.Model], keys: tuple[str, ...], measures: tuple[str, ...], vendor: str):
    """The statement and column adapters of one rollup table, built once per database vendor
    (they run after every ledger batch; building them was most of a rollup update's time)."""
    return increment_sql(model, keys, measures), _adapters(model, [*keys, *measures])


def rollup_increment(spec: LedgerSpec, rows: Iterable[tuple[str, Any, tuple, Row]]) -> int:
    """Add measures to rollup rows, each given as (grain, bucket, dimension key, measures)."""
    model = spec.rollup
    keys = ("grain", "bucket", *spec.dims)
    measures = tuple(spec.measure_names)
    sql, adapters = _statement(model, keys, measures, connection.vendor)
    params = [
        _params(adapters, [grain, bucket, *key, *(values[m] for m in measures)])
        for grain, bucket, key, values in rows
    ]
    with connection.cursor() as cursor:
        for start in range(0, len(params), _BATCH):
            cursor.executemany(sql, params[start : start + _BATCH])
    return len(params)
