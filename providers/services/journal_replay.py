"""Replay a dead process's ledger journal: write what it had not written, announce what it had
not announced, and close what it left in flight.

The JournalCursor row of the journal says how far the dead writer got: rows past its
`committed` position are written (idempotently: completions upserted, attempts ON CONFLICT DO
NOTHING), rows between `announced` and `committed` were written but the rollups never heard of
them, so they are announced. Calls that had started and not ended ("s" lines without their
attempt) are written as `cancelled` attempts, and requests that had reached the engine and not
finished (a first call's "s" line without its completion) as `cancelled` completions whose totals are
those of their attempts: an upstream call the dead process made is never missing from the
ledger, and no attempt is left without its completion.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db.models import Count, Max, Q, Sum

from providers.engine.results import NO_CALL_OUTCOMES
from providers.models import Attempt, JournalCursor

from .journal import JournalReader
from .journal_codec import CALL_PREFIX, decode, decode_call
from .recorder import Position, Written, announce_rows, cursor_advance, set_aside, written_of
from .recorder_rows import PendingRow

Write = Callable[..., Written]


def _position(cursor: JournalCursor | None, which: str) -> tuple[int, int]:
    if cursor is None:
        return (0, 0)
    return (getattr(cursor, f"{which}_segment"), getattr(cursor, f"{which}_offset"))


def _call_key(fields: dict[str, Any]) -> tuple[Any, int, int]:
    return (fields["completion_id"], fields["step_position"], fields.get("retry_index", 0))


def replay_journal(folder: Path, write: Write, max_batch: int) -> int:
    """Replay one dead journal (its lock held by the caller); returns the rows written."""
    cursor = JournalCursor.objects.filter(journal=folder.name).first()
    committed, announced = _position(cursor, "committed"), _position(cursor, "announced")
    reader = JournalReader(folder)
    open_requests: dict[Any, PendingRow] = {}
    open_calls: dict[tuple[Any, int, int], PendingRow] = {}
    rows = 0
    while lines := reader.read(max_batch):
        to_write, to_announce = [], []
        for segment, end, line in lines:
            try:
                if line.startswith(CALL_PREFIX):
                    row, completion = decode_call(line)
                    open_calls[_call_key(row.fields)] = row
                    if completion is not None:
                        open_requests.setdefault(completion.fields["id"], completion)
                    continue
                kind, row, _ = decode(line)
            except Exception:
                set_aside(folder.parent, line)  # the folder itself is removed after the replay
                continue
            if kind == "c":
                open_requests.pop(row.fields["id"], None)
            elif kind == "a":
                open_calls.pop(_call_key(row.fields), None)
            if (segment, end) > committed:
                to_write.append(row)
            elif (segment, end) > announced:
                to_announce.append(row)
        written = write(to_write, folder) if to_write else Written([], [])
        written.extend(written_of(to_announce))
        announce_rows(written)
        reader.commit()
        rows += len(to_write)
    rows += _close_in_flight(folder, write, open_calls, open_requests)
    JournalCursor.objects.filter(journal=folder.name).delete()
    return rows


def _close_in_flight(
    folder: Path,
    write: Write,
    open_calls: dict[tuple[Any, int, int], PendingRow],
    open_requests: dict[Any, PendingRow],
) -> int:
    if open_calls:
        announce_rows(write(list(open_calls.values()), folder))
    if not open_requests:
        return len(open_calls)
    totals = (
        Attempt.objects.filter(completion_id__in=list(open_requests))
        .values("completion_id")
        .annotate(
            calls=Count("id", filter=~Q(outcome__in=NO_CALL_OUTCOMES)),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cached_tokens=Sum("cached_tokens"),
            reasoning_tokens=Sum("reasoning_tokens"),
            cost_usd=Sum("cost_usd"),
            unpriced=Count("id", filter=Q(unpriced=True)),
            last=Max("started_at"),
        )
    )
    for total in totals:
        fields = open_requests[total.pop("completion_id")].fields
        last = total.pop("last")
        fields.update({name: value or 0 for name, value in total.items() if name != "unpriced"})
        fields["attempt_count"] = total["calls"]
        fields.pop("calls", None)
        fields["unpriced"] = bool(total["unpriced"])
        fields["finished_at"] = last
    announce_rows(write(list(open_requests.values()), folder))
    return len(open_calls) + len(open_requests)


def record_announced(position: Position) -> None:
    from django.db import DEFAULT_DB_ALIAS, connections

    cursor_advance(connections[DEFAULT_DB_ALIAS], position, "announced")
