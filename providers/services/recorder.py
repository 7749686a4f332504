"""The ledger's write path: rows to the database in batches, and the process's recorder.

`write_rows` writes one batch in one transaction through prepared inserts (no model
instances, no per-batch statement compiling); completions and their bodies are upserted by id and attempts
inserted with ON CONFLICT DO NOTHING on (completion, step, retry), so writing a row twice (a
journal replay) changes nothing. The ledger_rows_written listeners (the dashboards' rollups)
hear of written rows through `announce_rows`.

`get_recorder()` is the process's recorder: in "buffered" mode (the default) a
ledger_writer.BufferedRecorder, which journals every row on disk before the request goes on
and writes behind it (journal.py, ledger_writer.py, journal_replay.py); in "sync" mode (the
test suite's) a SyncRecorder that writes each row before `submit` returns; in "memory" mode
(ledger_memory.py: the journal off, rows lost at a hard kill) only to measure the journal. A graceful stop
(SIGTERM, SIGINT, interpreter exit) flushes and announces everything, then hands the signal to
the handler that was there before (the server's).
"""

from __future__ import annotations

import atexit
import bisect
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    close_old_connections,
    connection,
    connections,
    models,
    transaction,
)
from django.utils import timezone

from providers.models import Attempt, Completion, CompletionBody, JournalCursor
from providers.signals import ledger_rows_written

from .recorder_rows import PendingRow, Row

__all__ = [
    "PendingRow",
    "Row",
    "SyncRecorder",
    "get_recorder",
    "ledger_flush",
    "write_rows",
]

log = logging.getLogger("rana.ledger")

_ATTEMPT_KEY = ("completion", "step_position", "retry_index")  # Attempt's attempt_unique_try


class _Table:
    """One ledger table's insert statement and how to turn a row into its parameters.

    Django's bulk_create compiles the statement again for every batch and prepares every
    value through several layers of calls: for the ledger's batches that was most of the
    writer's time, all of it holding the GIL the event loop needs. The statement here is
    built once; values go through the same field adapters Django uses (get_db_prep_save),
    except where the driver takes the Python value as is."""

    _PLAIN = (models.IntegerField, models.CharField, models.FloatField, models.TextField, models.BooleanField)

    def __init__(self, model: type[models.Model], *, upsert: bool) -> None:
        self.model = model
        self.fields = [f for f in model._meta.concrete_fields if upsert or not f.primary_key]
        self.upsert = upsert
        self.position = {f.attname: i for i, f in enumerate(self.fields)}
        for i, f in enumerate(self.fields):  # a foreign key may come by name, as an instance
            self.position.setdefault(f.name, i)
        self.fk_by_name = {f.name for f in self.fields if f.is_relation and f.name != f.attname}
        self._sql: dict[str, str] = {}
        # Per column: None where the driver takes the Python value as is, else the field.
        self._adapted = [None if isinstance(f, self._PLAIN) and not f.is_relation else f for f in self.fields]
        assert upsert or model._meta.concrete_fields[0].primary_key  # instance(): the pk comes first
        made = [f.has_default() and callable(f.default) for f in self.fields]
        self._static = [None if m else f.get_default() for f, m in zip(self.fields, made, strict=True)]
        self._made = [(i, f.default) for i, (f, m) in enumerate(zip(self.fields, made, strict=True)) if m]

    def defaults(self) -> list[Any]:
        values = self._static.copy()
        for i, make in self._made:
            values[i] = make()
        return values

    def values_of(self, row: Row) -> list[Any]:
        """The row's values in column order (defaults for what a PendingRow leaves out)."""
        if isinstance(row, PendingRow):
            values = self.defaults()
            position = self.position
            for name, value in row.fields.items():
                if name in self.fk_by_name and value is not None and not isinstance(value, int | str):
                    value = value.pk
                values[position[name]] = value
            return values
        return [f.pre_save(row, add=True) for f in self.fields]

    def sql(self, db) -> str:
        sql = self._sql.get(db.vendor)
        if sql is None:
            quote = db.ops.quote_name
            table = quote(self.model._meta.db_table)
            columns = ", ".join(quote(f.column) for f in self.fields)
            placeholders = ", ".join(["%s"] * len(self.fields))
            sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"  # noqa: S608 (names from model metadata)
            if self.upsert:
                pk = quote(self.model._meta.pk.column)
                updates = ", ".join(  # every column but the id and when the request came
                    f"{quote(f.column)} = EXCLUDED.{quote(f.column)}"
                    for f in self.fields
                    if not f.primary_key and f.name != "created_at"
                )
                sql += f" ON CONFLICT ({pk}) DO UPDATE SET {updates}"
            else:  # attempts: a replayed row is already there
                key = ", ".join(quote(self.model._meta.get_field(n).column) for n in _ATTEMPT_KEY)
                sql += f" ON CONFLICT ({key}) DO NOTHING"
            self._sql[db.vendor] = sql
        return sql

    def params(self, db, values: list[Any]) -> list[Any]:
        """Statement parameters for one row on the connection `db` (not the thread-local proxy)."""
        return [
            v if f is None or v is None else f.get_db_prep_save(v, connection=db)
            for f, v in zip(self._adapted, values, strict=True)
        ]

    def instance(self, values: list[Any]) -> Completion | Attempt:
        """A model instance for the rows_written listeners (positional: Django's fast path)."""
        if self.upsert:
            return self.model(*values)
        return self.model(None, *values)


_COMPLETIONS = _Table(Completion, upsert=True)
_ATTEMPTS = _Table(Attempt, upsert=False)
_BODIES = _Table(CompletionBody, upsert=True)


@dataclass(slots=True)
class Written:
    """Rows of one or more committed batches, kept as values until listeners want them."""

    completions: list[list[Any]]
    attempts: list[list[Any]]

    def __len__(self) -> int:
        return len(self.completions) + len(self.attempts)

    def extend(self, other: Written) -> None:
        self.completions += other.completions
        self.attempts += other.attempts

    def rows(self) -> list[Completion | Attempt]:
        return [*map(_COMPLETIONS.instance, self.completions), *map(_ATTEMPTS.instance, self.attempts)]


Position = tuple[str, int, int]  # (journal folder name, segment number, offset past a line)


def write_rows(rows: Iterable[Row], *, announce: bool = True, committed: Position | None = None) -> Written:
    """Write one batch in one transaction: completions (upserted) first, then attempts, then
    bodies (upserted; the listeners never hear of them).

    With `announce`, ledger_rows_written listeners hear of the rows once the transaction
    commits; without, the caller announces what this returns (announce_rows) when it likes.
    `committed`: the journal position these rows reach, recorded in the same transaction."""
    completions: dict = {}
    attempts: list[list[Any]] = []
    bodies: dict = {}
    for row in rows:
        model = row.model if isinstance(row, PendingRow) else type(row)
        if issubclass(model, Completion):
            values = _COMPLETIONS.values_of(row)
            completions[values[0]] = values  # the latest state of a completion wins
        elif model is CompletionBody:
            values = _BODIES.values_of(row)
            bodies[values[0]] = values
        else:
            attempts.append(_ATTEMPTS.values_of(row))
    written = Written(list(completions.values()), attempts)
    db = connections[DEFAULT_DB_ALIAS]  # this thread's connection
    batches = (
        (_COMPLETIONS, written.completions),
        (_ATTEMPTS, written.attempts),
        (_BODIES, list(bodies.values())),
    )
    with transaction.atomic():
        with db.cursor() as cursor:
            for table, batch in batches:
                if batch:
                    cursor.executemany(table.sql(db), [table.params(db, values) for values in batch])
        if committed is not None:
            cursor_advance(db, committed, "committed")
        if announce and ledger_rows_written.has_listeners():
            transaction.on_commit(lambda: announce_rows(written))
    return written


def cursor_advance(db, position: Position, which: str) -> None:
    """Record how far a journal is `committed` (in the rows' own transaction) or `announced`:
    one upsert statement, not the ORM's read-then-write (it runs once per batch)."""
    journal, segment, offset = position
    quote = db.ops.quote_name
    table = quote(JournalCursor._meta.db_table)
    seg, off, when = quote(f"{which}_segment"), quote(f"{which}_offset"), quote("updated_at")
    other = "announced" if which == "committed" else "committed"
    sql = (
        f"INSERT INTO {table} ({quote('journal')}, {seg}, {off}, {quote(f'{other}_segment')}, "  # noqa: S608
        f"{quote(f'{other}_offset')}, {when}) VALUES (%s, %s, %s, 0, 0, %s) "
        f"ON CONFLICT ({quote('journal')}) DO UPDATE SET {seg} = EXCLUDED.{seg}, {off} = EXCLUDED.{off}, "
        f"{when} = EXCLUDED.{when}"
    )
    now = JournalCursor._meta.get_field("updated_at").get_db_prep_value(timezone.now(), connection=db)
    with db.cursor() as cursor:
        cursor.execute(sql, [journal, segment, offset, now])


def set_aside(folder: Path, line: bytes) -> None:
    """A journal line that cannot be read (a bug, a disk error): kept in rejected.jsonl, logged."""
    log.error("a ledger journal line could not be read; kept in %s/rejected.jsonl", folder)
    with (folder / "rejected.jsonl").open("ab") as handle:
        handle.write(line + b"\n")


def written_of(rows: Iterable[Row]) -> Written:
    """Rows already in the database, as the listeners are told of them."""
    written = Written([], [])
    for row in rows:
        model = row.model if isinstance(row, PendingRow) else type(row)
        if issubclass(model, Completion):
            written.completions.append(_COMPLETIONS.values_of(row))
        elif model is not CompletionBody:
            written.attempts.append(_ATTEMPTS.values_of(row))
    return written


def announce_rows(written: Written) -> None:
    """Tell listeners (the dashboards' rollups) which rows landed; their errors are only logged."""
    if not written or not ledger_rows_written.has_listeners():
        return
    for receiver, result in ledger_rows_written.send_robust(None, rows=written.rows()):
        if isinstance(result, Exception):
            log.error("ledger_rows_written receiver %r failed: %r", receiver, result)


class ActivityWindow:
    """When some work last ran (perf_counter seconds): read by the loop-lag probe
    (gateway.api.loop_lag) to tell which stalls of the event loop a ledger batch overlapped."""

    __slots__ = ("end", "runs", "start")

    def __init__(self) -> None:
        self.start = 0.0
        self.end = 0.0  # 0 while running
        self.runs = 0

    def begin(self) -> None:
        self.start, self.end = time.perf_counter(), 0.0
        self.runs += 1

    def finish(self) -> float:
        self.end = time.perf_counter()
        return self.end - self.start

    def overlaps(self, t0: float, t1: float) -> bool:
        return self.runs > 0 and self.start < t1 and (self.end == 0.0 or self.end > t0)


ledger_batch = ActivityWindow()  # the writer thread's batches


class LagHistogram:
    """How long rows waited between submit and commit (ms), in fixed buckets: the writer's lag."""

    EDGES_MS = (1, 2, 5, 10, 20, 50, 100, 150, 200, 250, 300, 500, 1000, 2000, 5000, 10000)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.EDGES_MS) + 1)
        self.max_ms = 0.0
        # Who else hears of each batch's lags and of the backlog (the metrics, when on: observe.py).
        self.on_lags: Callable[[list[float]], None] | None = None
        self.on_backlog: Callable[[int], None] | None = None

    def add(self, lags_ms: Iterable[float]) -> None:
        edges = self.EDGES_MS
        if self.on_lags is not None:
            lags_ms = list(lags_ms)
            self.on_lags(lags_ms)
        for lag in lags_ms:
            self.counts[bisect.bisect_left(edges, lag)] += 1
            self.max_ms = max(self.max_ms, lag)

    def as_dict(self) -> dict[str, Any]:
        return {"edges_ms": list(self.EDGES_MS), "counts": list(self.counts), "max_ms": round(self.max_ms, 3)}


ledger_lag = LagHistogram()  # this process's writer: submit -> commit, per row


class SyncRecorder:
    """Writes each row at once, on a helper thread, and waits for it: `submit` blocks its caller,
    the event loop too when called from async code. For tests (rows are there when a request
    returns), not for serving."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rana-ledger-sync")

    def submit(self, row: Row) -> None:
        self._executor.submit(self._write, row).result()

    def call_started(self, attempt: PendingRow, completion: dict[str, Any] | None) -> None:
        """Nothing to journal: every row is written before submit returns."""

    @staticmethod
    def _write(row: Row) -> None:
        close_old_connections()
        write_rows([row])

    def flush(self, timeout_s: float = 10.0) -> bool:
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Close the helper thread's database connection."""
        self._executor.submit(lambda: connection.close()).result(timeout_s)


_recorder: Any = None  # the process's recorder: a SyncRecorder or a ledger_writer.BufferedRecorder
_recorder_lock = threading.Lock()


def get_recorder() -> Any:
    global _recorder
    if _recorder is None:
        with _recorder_lock:
            if _recorder is None:
                if settings.RANA_LEDGER_MODE == "sync":
                    _recorder = SyncRecorder()
                elif settings.RANA_LEDGER_MODE == "memory":  # the journal off: for measuring it
                    from .ledger_memory import MemoryRecorder

                    _recorder = MemoryRecorder(interval_s=settings.RANA_LEDGER_FLUSH_MS / 1000)
                    _install_shutdown_flush()
                else:
                    from .ledger_writer import BufferedRecorder

                    _recorder = BufferedRecorder(interval_s=settings.RANA_LEDGER_FLUSH_MS / 1000)
                    _install_shutdown_flush()
    return _recorder


def ledger_flush(timeout_s: float = 10.0) -> bool:
    return _recorder.flush(timeout_s) if _recorder is not None else True


def _install_shutdown_flush() -> None:
    """Flush on interpreter exit and before the process's SIGTERM/SIGINT handling."""
    atexit.register(ledger_flush)
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)

        def handler(sig, frame, previous=previous):
            ledger_flush()
            if callable(previous):
                previous(sig, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(sig, signal.SIG_DFL)
                signal.raise_signal(sig)

        try:
            signal.signal(signum, handler)
        except ValueError:  # not in the main thread of the main interpreter
            return
