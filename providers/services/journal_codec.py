"""Ledger rows to journal lines and back: one orjson array per row,
[kind, {field: value}, submitted at (Unix seconds)].

Kinds: "c" a completion and "a" an attempt, as they are to be written; "r" a request that
reached the engine and "s" an upstream call that started, each carrying the row to write
should the process die before the request or the call ends (a completion or an attempt
saying so). The writer never writes "r" and "s" rows while their process lives.

Values keep their types through the round trip: datetimes as ISO 8601 with their offset,
UUIDs and Decimals as strings (decoded by the model field's type), a foreign key given as a
model instance as its primary key.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
from django.db import models

from providers.models import Attempt, Completion

from .recorder_rows import PendingRow, Row

_TAGS: dict[type[models.Model], str] = {Completion: "c", Attempt: "a"}
_PROVISIONAL = {"c": "r", "a": "s"}
_MODELS = {"c": Completion, "a": Attempt, "r": Completion, "s": Attempt}


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, models.Model):
        return value.pk
    raise TypeError(f"cannot journal a {type(value).__name__}")


def encode(row: Row, *, provisional: bool = False) -> bytes:
    if isinstance(row, PendingRow):
        model, fields = row.model, row.fields
    else:
        model = type(row)
        fields = {f.attname: getattr(row, f.attname) for f in model._meta.concrete_fields}
        if fields.get("id") is None:
            fields.pop("id", None)
    tag = next(t for m, t in _TAGS.items() if issubclass(model, m))
    tag = _PROVISIONAL[tag] if provisional else tag
    return orjson.dumps([tag, fields, time.time()], default=_default) + b"\n"


def _converter(field: models.Field) -> Callable[[Any], Any] | None:
    target = field.target_field if field.is_relation else field
    if isinstance(target, models.DateTimeField):
        return dt.datetime.fromisoformat
    if isinstance(target, models.UUIDField):
        return uuid.UUID
    if isinstance(target, models.DecimalField):
        return Decimal
    return None


_CONVERTERS: dict[str, dict[str, Callable[[Any], Any]]] = {  # per kind
    tag: {
        name: convert
        for f in model._meta.concrete_fields
        for name in {f.name, f.attname}
        if (convert := _converter(f)) is not None
    }
    for tag, model in _MODELS.items()
}


def decode(line: bytes) -> tuple[str, PendingRow, float]:
    """The line's kind, its row, and when it was submitted (Unix seconds)."""
    tag, fields, submitted = orjson.loads(line)
    converters = _CONVERTERS[tag]
    for name, value in fields.items():
        if value is not None and name in converters:
            fields[name] = converters[name](value)
    return tag, PendingRow(_MODELS[tag], fields), submitted
