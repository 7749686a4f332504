"""Ledger rows to journal lines and back: one orjson array per row,
[kind, {field: value}, submitted at (Unix seconds)].

Kinds: "c" a completion, "a" an attempt and "b" a completion's body (chains that keep
bodies), as they are to be written; "s" an upstream call
that started, carrying the attempt row to write should the process die before the call ends
(and, on a request's first call, a fourth element: the completion to write should it die
before the request ends). The writer never writes "s" rows while their process lives; it only
reads the request id at the start of the line (CALL_PREFIX), so that costs no decoding.

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

from providers.models import Attempt, Completion, CompletionBody

from .recorder_rows import PendingRow, Row

_TAGS: dict[type[models.Model], str] = {Completion: "c", Attempt: "a", CompletionBody: "b"}
_MODELS = {"c": Completion, "a": Attempt, "b": CompletionBody, "s": Attempt}
CALL_PREFIX = b'["s",{"completion_id":"'  # attempt_started puts completion_id first
UUID_TEXT = 36


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, models.Model):
        return value.pk
    raise TypeError(f"cannot journal a {type(value).__name__}")


def encode_call(row: PendingRow, completion: dict[str, Any] | None) -> bytes:
    """A call in flight ("s"): its provisional attempt, and on a request's first call the
    provisional completion too. The attempt's fields must start with completion_id."""
    line: list[Any] = ["s", row.fields, time.time()]
    if completion is not None:
        line.append(completion)
    return orjson.dumps(line, default=_default) + b"\n"


def call_request_id(line: bytes) -> str:
    """The request id of an "s" line, read without decoding it."""
    start = len(CALL_PREFIX)
    return line[start : start + UUID_TEXT].decode("ascii")


def decode_call(line: bytes) -> tuple[PendingRow, PendingRow | None]:
    """An "s" line: the provisional attempt and, on a first call, the provisional completion."""
    parts = orjson.loads(line)
    attempt = _typed("a", parts[1])
    completion = _typed("c", parts[3]) if len(parts) > 3 and parts[3] is not None else None
    return attempt, completion


def encode(row: Row) -> bytes:
    if isinstance(row, PendingRow):
        model, fields = row.model, row.fields
    else:
        model = type(row)
        fields = {f.attname: getattr(row, f.attname) for f in model._meta.concrete_fields}
        if fields.get("id") is None:
            fields.pop("id", None)
    tag = _TAGS.get(model) or next(t for m, t in _TAGS.items() if issubclass(model, m))
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


def _typed(tag: str, fields: dict[str, Any]) -> PendingRow:
    converters = _CONVERTERS[tag]
    for name, value in fields.items():
        if value is not None and name in converters:
            fields[name] = converters[name](value)
    return PendingRow(_MODELS[tag], fields)


def decode(line: bytes) -> tuple[str, PendingRow, float]:
    """The line's kind, its row, and when it was submitted (Unix seconds). An "s" line gives
    its provisional attempt (decode_call gives the completion it may carry too)."""
    tag, fields, submitted, *_ = orjson.loads(line)
    return tag, _typed(tag, fields), submitted
