"""The capability table: load the bundled YAML into ModelCapability.

Rows the loader wrote are `bundled` and are brought up to date on every load; a row an
operator saved in the admin is `operator` and is never touched by a load. Unlisted
booleans take the defaults of the model (tools, parallel tools and JSON mode on; images,
JSON schema and reasoning off), so a row says only what differs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction

from providers.models import CAPABILITY_FIELDS, CapabilitySource, ModelCapability

CAPABILITY_TABLE_PATH = Path(__file__).resolve().parent.parent / "data" / "capabilities.yaml"
_VALUE_FIELDS = (*CAPABILITY_FIELDS, "context_window", "max_output_tokens")


class CapabilityTableError(ValueError):
    """The capability table file is malformed; the message says where."""


@dataclass
class CapabilityLoadReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    kept: int = 0  # operator rows left as they are

    def __str__(self) -> str:
        return (
            f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.kept} operator rows kept"
        )


def _values(where: str, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise CapabilityTableError(f"{where}: expected a mapping of capabilities")
    unknown = set(raw) - set(_VALUE_FIELDS)
    if unknown:
        raise CapabilityTableError(f"{where}: unknown keys {sorted(unknown)}")
    defaults = {
        f.name: f.get_default() for f in ModelCapability._meta.concrete_fields if f.name in _VALUE_FIELDS
    }
    return {**defaults, **raw}


def capabilities_load(*, path: Path | None = None) -> CapabilityLoadReport:
    """Load a capability table file (the bundled one by default), all rows or none."""
    path = path or CAPABILITY_TABLE_PATH
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CapabilityTableError(f"{path}: YAML syntax error: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise CapabilityTableError(f"{path}: needs as_of and a 'models' mapping of provider kinds")
    as_of = data.get("as_of")
    if not isinstance(as_of, dt.date):
        raise CapabilityTableError(f"{path}: as_of: expected a date like 2025-11-20")
    report = CapabilityLoadReport()
    with transaction.atomic():
        existing = {(r.provider_kind, r.model): r for r in ModelCapability.objects.all()}
        for kind, models in data["models"].items():
            if not isinstance(models, dict):
                raise CapabilityTableError(f"{path}: models.{kind}: expected a mapping of models")
            for model, raw in models.items():
                where = f"{path}: models.{kind}.{model}"
                values = _values(where, raw)
                row = existing.get((kind, model))
                if row is not None and row.source == CapabilitySource.OPERATOR:
                    report.kept += 1
                    continue
                if row is None:
                    row = ModelCapability(provider_kind=kind, model=model, source=CapabilitySource.BUNDLED)
                elif all(getattr(row, k) == v for k, v in values.items()) and row.as_of == as_of:
                    report.unchanged += 1
                    continue
                created = row.pk is None
                for name, value in values.items():
                    setattr(row, name, value)
                row.as_of = as_of
                try:
                    row.full_clean()
                except ValidationError as exc:
                    raise CapabilityTableError(f"{where}: {exc.messages}") from exc
                row.save()
                if created:
                    report.created += 1
                else:
                    report.updated += 1
    return report
