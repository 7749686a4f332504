"""Configuration as code: providers, prices and chains to and from YAML.

Export never writes a key: only its source (`api_key: env:NAME`) when it came from the
environment. Import is idempotent and all-or-nothing: every entry is validated through the
model's full_clean, every problem is reported as `file: path.inside[0].field: what`, and a
file with any problem changes nothing. Import creates and updates; it never deletes
providers, chains or prices missing from the file (a chain's steps do follow the file).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml
from django.db import transaction

from providers.models import FallbackChain, ModelPrice, Provider
from providers.models.chain import CHAIN_CONFIG_FIELDS, STEP_CONFIG_FIELDS
from providers.models.provider import PROVIDER_CONFIG_FIELDS

from .config_apply import ImportRun

CONFIG_VERSION = 1
PROVIDER_FIELDS = PROVIDER_CONFIG_FIELDS
CHAIN_FIELDS = CHAIN_CONFIG_FIELDS
STEP_FIELDS = STEP_CONFIG_FIELDS
PRICE_FIELDS = (
    "provider_kind",
    "model",
    "effective_from",
    "input_per_mtok",
    "output_per_mtok",
    "cached_input_per_mtok",
    "context_window",
)
SECTIONS = ("providers", "prices", "chains")
_HEADER = (
    "# RANA configuration (python manage.py rana_config export / import FILE).\n"
    "# Keys are never written here: set `api_key: env:VARIABLE_NAME` and export the variable.\n"
)


class ConfigImportError(Exception):
    """A configuration file that cannot be imported; nothing was changed."""

    def __init__(self, filename: str, problems: list[tuple[str, str]]) -> None:
        self.filename = filename
        self.problems = problems
        lines = [f"{filename}: {path}: {what}" if path else f"{filename}: {what}" for path, what in problems]
        super().__init__("\n".join(lines))


@dataclass
class ImportReport:
    filename: str
    created: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    unchanged: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(+self.created or +self.updated)

    def __str__(self) -> str:
        parts = [
            f"{section}: {self.created[section]} created, {self.updated[section]} updated, "
            f"{self.unchanged[section]} unchanged"
            for section in SECTIONS
        ]
        return f"{self.filename}: " + "; ".join(parts)


# --- export ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A value safe_dump can write and import reads back equal."""
    if isinstance(value, Decimal):
        return float(value)
    return value


def _provider_entry(provider: Provider) -> dict[str, Any]:
    entry = {name: _plain(getattr(provider, name)) for name in PROVIDER_FIELDS}
    if provider.api_key_source.startswith("env:"):
        entry["api_key"] = provider.api_key_source
    return entry


def _chain_entry(chain: FallbackChain) -> dict[str, Any]:
    entry = {name: _plain(getattr(chain, name)) for name in CHAIN_FIELDS}
    entry["steps"] = [
        {"provider": step.provider.name, **{name: _plain(getattr(step, name)) for name in STEP_FIELDS}}
        for step in chain.steps.select_related("provider").order_by("position", "id")
    ]
    return entry


def config_export() -> str:
    """Every provider, price and chain as YAML (no keys, only env: sources)."""
    data = {
        "version": CONFIG_VERSION,
        "providers": [_provider_entry(p) for p in Provider.objects.order_by("name")],
        "prices": [
            {name: _plain(getattr(price, name)) for name in PRICE_FIELDS}
            for price in ModelPrice.objects.order_by("provider_kind", "model", "effective_from")
        ],
        "chains": [_chain_entry(c) for c in FallbackChain.objects.order_by("name")],
    }
    return _HEADER + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


# --- import ---------------------------------------------------------------------------


def _parse(text: str, filename: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigImportError(filename, [(where, f"YAML syntax error: {exc.problem}")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigImportError(filename, [("", f"YAML syntax error: {exc}")]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigImportError(filename, [("", "the file must be a mapping with providers, prices, chains")])
    problems = [(str(key), "unknown section") for key in data if key not in {"version", *SECTIONS}]
    if data.get("version", CONFIG_VERSION) != CONFIG_VERSION:
        problems.append(("version", f"unsupported version (this RANA reads version {CONFIG_VERSION})"))
    for section in SECTIONS:
        if not isinstance(data.get(section) or [], list):
            problems.append((section, "expected a list"))
    if problems:
        raise ConfigImportError(filename, problems)
    return data


def config_import(*, text: str, filename: str) -> ImportReport:
    """Apply a configuration file: all of it in one transaction, or none of it."""
    data = _parse(text, filename)
    report = ImportReport(filename=filename)
    run = ImportRun(
        report=report,
        fields={"providers": PROVIDER_FIELDS, "chains": CHAIN_FIELDS, "steps": STEP_FIELDS},
        price_fields=PRICE_FIELDS,
    )
    with transaction.atomic():
        run.providers(data.get("providers") or [])
        run.prices(data.get("prices") or [])
        run.chains(data.get("chains") or [])
        if run.problems:
            raise ConfigImportError(filename, run.problems)  # rolls the transaction back
    report.warnings = [f"{filename}: {path}: {what}" for path, what in run.warnings]
    return report
