"""A ledger row on its way to the database: field values, or a model instance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers.models import Attempt, Completion, CompletionBody


@dataclass(frozen=True, slots=True)
class PendingRow:
    """A ledger row as its field values: nothing is built on the request path; the writer
    thread turns the values straight into statement parameters (no model instance)."""

    model: type[Completion] | type[Attempt] | type[CompletionBody]
    fields: dict[str, Any]

    def build(self) -> Completion | Attempt | CompletionBody:
        return self.model(**self.fields)


Row = Completion | Attempt | CompletionBody | PendingRow
