"""ProviderStatus upkeep: remember each provider's latest success and latest provider error.

The upsert keeps whichever moment is later, so notes can arrive in any order and a rebuild
can replay a range without moving anything backwards. Like the rollup upserts (see
dashboards.rollups.upsert) it writes one row per provider, sorted by (name, injected), in one
multi-row statement (a handful of providers), so concurrent writers lock the rows in the
same order and cannot deadlock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection
from django.db.models import Max, Q

from dashboards.models import ProviderStatus
from dashboards.outcomes import NOT_COUNTED_IN_ERROR_RATE, SUCCESS, counts_as_error
from dashboards.rollups.upsert import rows_per_statement
from providers.models import Attempt

_MESSAGE_CHARS = 500
_ERROR_COLUMNS = ("last_error_at", "last_error_class", "last_error_status", "last_error_message")


@dataclass(slots=True)
class StatusNote:
    last_success_at: dt.datetime | None = None
    last_error_at: dt.datetime | None = None
    last_error_class: str = ""
    last_error_status: int | None = None
    last_error_message: str = ""

    def see(self, row: Attempt) -> None:
        if row.outcome == SUCCESS:
            if self.last_success_at is None or row.started_at > self.last_success_at:
                self.last_success_at = row.started_at
        elif counts_as_error(row.outcome) and (
            self.last_error_at is None or row.started_at > self.last_error_at
        ):
            self.last_error_at = row.started_at
            self.last_error_class = row.outcome
            self.last_error_status = row.http_status
            self.last_error_message = (row.error_message or "")[:_MESSAGE_CHARS]


def _keep_later(column: str, when: str, table: str) -> str:
    """SET clause: take the new value of `column` when the new `when` is later than the stored one."""
    newer = f"excluded.{when} IS NOT NULL AND ({table}.{when} IS NULL OR excluded.{when} > {table}.{when})"
    return f"{column} = CASE WHEN {newer} THEN excluded.{column} ELSE {table}.{column} END"


def _upsert_sql(rows: int = 1) -> str:
    q = connection.ops.quote_name
    table = q(ProviderStatus._meta.db_table)
    ok, err = q("last_success_at"), q("last_error_at")
    error_columns = [q(c) for c in _ERROR_COLUMNS]
    sets = [_keep_later(ok, ok, table), *(_keep_later(c, err, table) for c in error_columns)]
    columns = [q("provider_name"), q("injected"), ok, *error_columns]
    values = ", ".join([f"({', '.join(['%s'] * len(columns))})"] * rows)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values} "  # noqa: S608 (names from model metadata; values are parameters)
        f"ON CONFLICT ({q('provider_name')}, {q('injected')}) DO UPDATE SET {', '.join(sets)}"
    )


def provider_status_note(notes: dict[tuple[str, bool], StatusNote]) -> None:
    if not notes:
        return
    field = ProviderStatus._meta.get_field("last_success_at")
    params = [
        [
            name,
            injected,
            field.get_db_prep_save(note.last_success_at, connection),
            field.get_db_prep_save(note.last_error_at, connection),
            note.last_error_class,
            note.last_error_status,
            note.last_error_message,
        ]
        for (name, injected), note in sorted(notes.items(), key=lambda item: item[0])
    ]
    step = rows_per_statement(len(params[0]))
    with connection.cursor() as cursor:
        for start in range(0, len(params), step):
            chunk = params[start : start + step]
            cursor.execute(_upsert_sql(len(chunk)), [value for row in chunk for value in row])


def notes_from_rows(rows: Iterable[Attempt]) -> dict[tuple[str, bool], StatusNote]:
    notes: dict[tuple[str, bool], StatusNote] = {}
    for row in rows:
        notes.setdefault((row.provider_name, bool(row.injected)), StatusNote()).see(row)
    return notes


def notes_from_ledger(start: dt.datetime, end: dt.datetime) -> dict[tuple[str, bool], StatusNote]:
    """The latest success and error per provider in a range: one query, plus one per error found."""
    errors = ~Q(outcome=SUCCESS) & ~Q(outcome__in=NOT_COUNTED_IN_ERROR_RATE)
    latest = (
        Attempt.objects.filter(started_at__gte=start, started_at__lt=end)
        .order_by()
        .values("provider_name", "injected")
        .annotate(ok=Max("started_at", filter=Q(outcome=SUCCESS)), err=Max("started_at", filter=errors))
    )
    notes = {}
    for row in latest:
        note = StatusNote(last_success_at=row["ok"])
        if row["err"] is not None:
            key = {"provider_name": row["provider_name"], "injected": row["injected"]}
            error = Attempt.objects.filter(errors, started_at=row["err"], **key).order_by("-id").first()
            if error is not None:
                note.see(error)
        notes[(row["provider_name"], row["injected"])] = note
    return notes
