"""Applying a parsed configuration file entry by entry, collecting located problems.

Used by config_io.config_import inside one transaction: rows are saved as they validate,
and the caller rolls everything back when `problems` is not empty.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Protocol

from django.core.exceptions import ValidationError
from django.db import models

from providers.models import ChainStep, FallbackChain, Provider, ProviderKind
from providers.secrets import KeyDecryptionError

from .chain_rules import StepDraft, chain_default_claim, chain_steps_problem
from .prices import PRICE_VALUE_FIELDS, price_upsert

Problem = tuple[str, str]
PLAINTEXT_KEY_WARNING = (
    "a plaintext key in a configuration file: use `api_key: env:VARIABLE_NAME` so the key stays out of files"
)


class _Report(Protocol):
    created: Counter[str]
    updated: Counter[str]
    unchanged: Counter[str]


def parse_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def _coerce(instance: models.Model, name: str, value: Any) -> Any:
    """YAML numbers into Decimals for decimal fields (through str, so 0.1 stays 0.1)."""
    field = instance._meta.get_field(name)
    if (
        isinstance(field, models.DecimalField)
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        return Decimal(str(value))
    return value


class ImportRun:
    def __init__(
        self, *, report: _Report, fields: dict[str, tuple[str, ...]], price_fields: tuple[str, ...]
    ) -> None:
        self.report = report
        self.fields = fields
        self.price_fields = price_fields
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.bad_providers: set[str] = set()
        self.default_chain_path: str | None = None

    # --- helpers ------------------------------------------------------------------------
    def _problem(self, path: str, what: str) -> None:
        self.problems.append((path, what))

    def _count(self, section: str, result: str) -> None:
        getattr(self.report, result)[section] += 1

    def _entry(
        self, entry: Any, path: str, *, allowed: Iterable[str], required: Iterable[str]
    ) -> dict | None:
        if not isinstance(entry, dict):
            self._problem(path, "expected a mapping")
            return None
        allowed = set(allowed)
        problems = [(f"{path}.{key}", "unknown field") for key in entry if key not in allowed]
        problems += [(f"{path}.{key}", "required") for key in required if entry.get(key) in (None, "")]
        self.problems.extend(problems)
        return None if problems else entry

    def _validation_problems(self, exc: ValidationError, path: str) -> None:
        if not hasattr(exc, "error_dict"):
            self._problem(path, " ".join(exc.messages))
            return
        for name, messages in exc.message_dict.items():
            self._problem(path if name == "__all__" else f"{path}.{name}", " ".join(messages))

    def _assign(
        self, instance: models.Model, values: dict[str, Any], path: str, *, exclude: Iterable[str] = ()
    ) -> bool | None:
        """Set values, validate; True if anything changed, None (problems noted) if invalid."""
        adding = instance._state.adding
        before = {} if adding else {name: getattr(instance, name) for name in values}
        for name, value in values.items():
            setattr(instance, name, _coerce(instance, name, value))
        try:
            instance.full_clean(exclude=list(exclude))
        except ValidationError as exc:
            self._validation_problems(exc, path)
            return None
        return adding or any(getattr(instance, name) != before[name] for name in values)

    # --- providers ----------------------------------------------------------------------
    def providers(self, entries: list[Any]) -> None:
        fields = self.fields["providers"]
        for i, raw in enumerate(entries):
            path = f"providers[{i}]"
            entry = self._entry(raw, path, allowed=(*fields, "api_key"), required=("name",))
            if entry is None:
                if isinstance(raw, dict) and raw.get("name"):
                    self.bad_providers.add(str(raw["name"]))
                continue
            name = str(entry["name"])
            provider = Provider.objects.filter(name=name).first() or Provider(name=name)
            adding = provider._state.adding
            if not self._provider_shape(entry, path, adding=adding):
                self.bad_providers.add(name)
                continue
            changed = self._assign(provider, {k: entry[k] for k in fields if k in entry}, path)
            key_changed = self._api_key(provider, entry.get("api_key"), f"{path}.api_key")
            if changed is None or key_changed is None:
                self.bad_providers.add(name)
                continue
            if changed or key_changed:
                provider.save()
            self._count(
                "providers", "created" if adding else "updated" if changed or key_changed else "unchanged"
            )

    def _provider_shape(self, entry: dict, path: str, *, adding: bool) -> bool:
        """Checks full_clean does not word well; False (problems noted) if any fails."""
        before = len(self.problems)
        kind = entry.get("kind")
        if adding and not kind:
            self._problem(f"{path}.kind", "required for a new provider")
        elif kind and kind not in ProviderKind.values:
            self._problem(f"{path}.kind", f"unknown kind '{kind}' (one of {', '.join(ProviderKind.values)})")
        if "options" in entry and not isinstance(entry["options"], dict):
            self._problem(f"{path}.options", "expected a mapping")
        return len(self.problems) == before

    def _api_key(self, provider: Provider, value: Any, path: str) -> bool | None:
        """Apply `api_key` (env:NAME or plaintext); False when the stored key already matches."""
        if value is None or value == "":
            return False  # no key in the file: keep whatever is stored
        if not isinstance(value, str):
            self._problem(path, "expected env:VARIABLE_NAME")
            return None
        if value.startswith("env:"):
            variable = value.removeprefix("env:").strip()
            plaintext = os.environ.get(variable, "").strip() if variable else ""
            if not variable:
                self._problem(path, "env: needs a variable name, e.g. env:OPENAI_API_KEY")
                return None
            if not plaintext:
                self._problem(path, f"environment variable {variable} is not set (or is empty)")
                return None
            source = f"env:{variable}"
        else:
            self.warnings.append((path, PLAINTEXT_KEY_WARNING))
            plaintext, source = value.strip(), ""
        try:
            current = provider.get_api_key()
        except KeyDecryptionError:
            current = None
        if current == plaintext and provider.api_key_source == source:
            return False
        provider.set_api_key(plaintext, source=source)
        return True

    # --- prices -------------------------------------------------------------------------
    def prices(self, entries: list[Any]) -> None:
        for i, raw in enumerate(entries):
            path = f"prices[{i}]"
            required = ("provider_kind", "model", "effective_from")
            entry = self._entry(raw, path, allowed=self.price_fields, required=required)
            if entry is None:
                continue
            try:
                effective_from = parse_date(entry["effective_from"])
            except ValueError:
                self._problem(f"{path}.effective_from", "expected a date like 2025-01-31")
                continue
            try:
                _, result = price_upsert(
                    provider_kind=str(entry["provider_kind"]),
                    model=str(entry["model"]),
                    effective_from=effective_from,
                    values={k: entry[k] for k in PRICE_VALUE_FIELDS if k in entry},
                )
            except ValidationError as exc:
                self._validation_problems(exc, path)
                continue
            except ValueError as exc:
                self._problem(path, str(exc))
                continue
            self._count("prices", result)

    # --- chains -------------------------------------------------------------------------
    def chains(self, entries: list[Any]) -> None:
        fields = self.fields["chains"]
        for i, raw in enumerate(entries):
            path = f"chains[{i}]"
            entry = self._entry(raw, path, allowed=(*fields, "steps"), required=("slug", "steps"))
            if entry is None:
                continue
            slug = str(entry["slug"])
            chain = FallbackChain.objects.filter(slug=slug).first() or FallbackChain(slug=slug)
            adding = chain._state.adding
            if adding and not entry.get("name"):
                self._problem(f"{path}.name", "required for a new chain")
                continue
            if entry.get("is_default") is True and not self._claim_default(chain, path):
                continue
            changed = self._assign(chain, {k: entry[k] for k in fields if k in entry}, path)
            if changed:
                chain.save()
            steps_changed = self._steps(
                chain if changed is not None else None, entry["steps"], f"{path}.steps"
            )
            if changed is None or steps_changed is None:
                continue
            self._count(
                "chains", "created" if adding else "updated" if changed or steps_changed else "unchanged"
            )

    def _claim_default(self, chain: FallbackChain, path: str) -> bool:
        if self.default_chain_path is not None:
            self._problem(
                f"{path}.is_default",
                f"only one chain can be the default ({self.default_chain_path} is already)",
            )
            return False
        self.default_chain_path = path
        chain_default_claim(chain=chain)
        return True

    def _steps(self, chain: FallbackChain | None, entries: Any, path: str) -> bool | None:
        """Make the chain's steps match the file (in place, by position); None if invalid."""
        if not isinstance(entries, list) or not entries:
            self._problem(path, "expected a list of steps")
            return None
        saved = chain is not None and chain.pk is not None
        existing = list(chain.steps.order_by("position", "id")) if saved else []
        drafts, to_save, ok = [], [], True
        for j, raw in enumerate(entries):
            where = f"{path}[{j}]"
            entry = self._entry(
                raw, where, allowed=("provider", *self.fields["steps"]), required=("provider",)
            )
            if entry is None:
                ok = False
                continue
            name = str(entry["provider"])
            provider = Provider.objects.filter(name=name).first()
            if provider is None:
                if name not in self.bad_providers:
                    self._problem(
                        f"{where}.provider", f"no provider named '{name}' in this file or the database"
                    )
                ok = False
                continue
            step = existing[j] if j < len(existing) else ChainStep(chain=chain if saved else None)
            values = {"provider": provider, "position": j, "enabled": True, "retries": None, "model": ""}
            values.update(timeout_s=None, first_token_timeout_s=None, idle_timeout_s=None, delay_s=None)
            values["weight"] = 1
            values.update({k: entry[k] for k in self.fields["steps"] if k in entry})
            changed = self._assign(step, values, where, exclude=() if saved else ("chain",))
            if changed is None:
                ok = False
                continue
            drafts.append(StepDraft(provider=provider, enabled=step.enabled))
            if changed:
                to_save.append(step)
        problem = chain_steps_problem(steps=drafts) if ok else None
        if problem:
            self._problem(path, problem)
        if not ok or problem or not saved:
            return None  # not saved: the chain itself is invalid, its steps were only checked
        for step in to_save:
            step.save()
        extra = existing[len(entries) :]
        for step in extra:
            step.delete()
        return bool(to_save or extra)
