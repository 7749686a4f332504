"""The price table: load the bundled YAML into ModelPrice, one upsert per row."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction

from providers.models import ModelPrice

PRICE_TABLE_PATH = Path(__file__).resolve().parent.parent / "data" / "prices.yaml"
PRICE_VALUE_FIELDS = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "context_window")
_TABLE_KEYS = {
    "input": "input_per_mtok",
    "output": "output_per_mtok",
    "cached_input": "cached_input_per_mtok",
}

UpsertResult = Literal["created", "updated", "unchanged"]


class PriceTableError(ValueError):
    """The price table file is malformed; the message says where."""


@dataclass
class PriceLoadReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    models: set[tuple[str, str]] = field(default_factory=set)

    def count(self, result: UpsertResult) -> None:
        setattr(self, result, getattr(self, result) + 1)

    def __str__(self) -> str:
        return (
            f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged "
            f"({len(self.models)} models)"
        )


def to_decimal(value: Any) -> Decimal | None:
    """A price as a Decimal; numbers go through str() so 0.1 stays 0.1."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"expected a number, got {value!r}") from exc


def describe_error(exc: ValidationError | ValueError) -> str:
    """One line naming each invalid field and what is wrong with it."""
    if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        return "; ".join(
            f"{name}: {' '.join(messages)}" if name != "__all__" else " ".join(messages)
            for name, messages in exc.message_dict.items()
        )
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc)


def price_upsert(
    *,
    provider_kind: str,
    model: str,
    effective_from: dt.date,
    values: dict[str, Any],
) -> tuple[ModelPrice, UpsertResult]:
    """Create or update the price row for kind + model + date; save only when it differs.

    `values` holds any of PRICE_VALUE_FIELDS. Raises ValidationError (model full_clean).
    """
    row = ModelPrice.objects.filter(
        provider_kind=provider_kind, model=model, effective_from=effective_from
    ).first()
    created = row is None
    if row is None:
        row = ModelPrice(provider_kind=provider_kind, model=model, effective_from=effective_from)
    changed = created
    for name in PRICE_VALUE_FIELDS:
        if name not in values:
            continue
        value = values[name] if name == "context_window" else to_decimal(values[name])
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    if not changed:
        return row, "unchanged"
    row.full_clean()
    row.save()
    return row, "created" if created else "updated"


def _table_rows(data: Any) -> list[tuple[str, dict[str, Any]]]:
    """Flatten the grouped table into (location, row) pairs, checking its shape."""
    if not isinstance(data, dict) or not isinstance(data.get("tables"), list):
        raise PriceTableError("the file must be a mapping with a 'tables' list")
    rows = []
    for i, table in enumerate(data["tables"]):
        where = f"tables[{i}]"
        if not isinstance(table, dict) or not isinstance(table.get("models"), dict):
            raise PriceTableError(f"{where}: needs provider_kind, effective_from and a 'models' mapping")
        if not isinstance(table.get("effective_from"), dt.date):
            raise PriceTableError(f"{where}.effective_from: expected a date like 2025-01-31")
        for model, prices in table["models"].items():
            if not isinstance(prices, dict):
                raise PriceTableError(f"{where}.models.{model}: expected a mapping of prices")
            unknown = set(prices) - {*_TABLE_KEYS, "context_window"}
            if unknown:
                raise PriceTableError(f"{where}.models.{model}: unknown keys {sorted(unknown)}")
            row = {_TABLE_KEYS.get(k, k): v for k, v in prices.items()}
            row.update(
                provider_kind=table.get("provider_kind"), model=model, effective_from=table["effective_from"]
            )
            rows.append((f"{where}.models.{model}", row))
    return rows


def prices_load(*, path: Path | None = None) -> PriceLoadReport:
    """Load a price table file (the bundled one by default), all rows or none."""
    path = path or PRICE_TABLE_PATH
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PriceTableError(f"{path}: YAML syntax error: {exc}") from exc
    report = PriceLoadReport()
    with transaction.atomic():
        for where, row in _table_rows(data):
            kind, model, date = row.pop("provider_kind"), row.pop("model"), row.pop("effective_from")
            try:
                _, result = price_upsert(provider_kind=kind, model=model, effective_from=date, values=row)
            except (ValidationError, ValueError) as exc:
                raise PriceTableError(f"{path}: {where}: {describe_error(exc)}") from exc
            report.count(result)
            report.models.add((kind, model))
    return report
