"""The ledger writer: every attempt reaches the database within 100 ms of ending.

In "buffered" mode (the default) rows go to a write-behind buffer: one daemon thread
drains it and writes what has gathered in one transaction, RANA_LEDGER_FLUSH_MS after the
first row of a batch (at once when someone is waiting in flush()), so the request path never
waits on the database and the writer's work (which holds the GIL) comes in few, large
batches rather than one transaction per row. The writer holds the GIL as briefly as it can:
rows go from their values straight to one prepared insert (no model instances, no
per-batch statement compiling), and the ledger_rows_written listeners (the dashboards'
rollups) hear of the written rows every ANNOUNCE_EVERY_S in one announcement rather than
after every batch. A graceful stop (SIGTERM, SIGINT, interpreter exit) flushes and announces
everything, then hands the signal to the handler that was there before (the server's); a hard
kill loses at most the rows of the last flush interval (and the rollups miss at most the last
announcement period: `manage.py rana_rollups` rebuilds those hours). "sync" mode writes each
row before `submit` returns (the test suite's mode).
"""

from __future__ import annotations

import atexit
import logging
import queue
import signal
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    close_old_connections,
    connection,
    connections,
    models,
    reset_queries,
    transaction,
)

from providers.models import Attempt, Completion
from providers.signals import ledger_rows_written
from rana_site.db_busy import is_database_busy

log = logging.getLogger("rana.ledger")

_COMPLETION_UPDATE_FIELDS = [
    f.name for f in Completion._meta.concrete_fields if f.name not in ("id", "created_at")
]


@dataclass(frozen=True, slots=True)
class PendingRow:
    """A ledger row as its field values: nothing is built on the request path; the writer
    thread turns the values straight into statement parameters (no model instance)."""

    model: type[Completion] | type[Attempt]
    fields: dict[str, Any]

    def build(self) -> Completion | Attempt:
        return self.model(**self.fields)


Row = Completion | Attempt | PendingRow


class _Table:
    """One ledger table's insert statement and how to turn a row into its parameters.

    Django's bulk_create compiles the statement again for every batch and prepares every
    value through several layers of calls: for the ledger's batches that was most of the
    writer's time, all of it holding the GIL the event loop needs. The statement here is
    built once; values go through the same field adapters Django uses (get_db_prep_save),
    except where the driver takes the Python value as is."""

    _PLAIN = (models.IntegerField, models.CharField, models.FloatField, models.TextField, models.BooleanField)

    def __init__(self, model: type[Completion] | type[Attempt], *, upsert: bool) -> None:
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
                updates = ", ".join(
                    f"{quote(f.column)} = EXCLUDED.{quote(f.column)}"
                    for f in self.fields
                    if f.name in _COMPLETION_UPDATE_FIELDS
                )
                sql += f" ON CONFLICT ({pk}) DO UPDATE SET {updates}"
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


def write_rows(rows: Iterable[Row], *, announce: bool = True) -> Written:
    """Write one batch in one transaction: completions (upserted) first, then attempts.

    With `announce`, ledger_rows_written listeners hear of the rows once the transaction
    commits; without, the caller announces what this returns (announce_rows) when it likes."""
    completions: dict = {}
    attempts: list[list[Any]] = []
    for row in rows:
        model = row.model if isinstance(row, PendingRow) else type(row)
        if issubclass(model, Completion):
            values = _COMPLETIONS.values_of(row)
            completions[values[0]] = values  # the latest state of a completion wins
        else:
            attempts.append(_ATTEMPTS.values_of(row))
    written = Written(list(completions.values()), attempts)
    db = connections[DEFAULT_DB_ALIAS]  # this thread's connection
    with transaction.atomic():
        with db.cursor() as cursor:
            for table, batch in ((_COMPLETIONS, written.completions), (_ATTEMPTS, written.attempts)):
                if batch:
                    cursor.executemany(table.sql(db), [table.params(db, values) for values in batch])
        if announce and ledger_rows_written.has_listeners():
            transaction.on_commit(lambda: announce_rows(written))
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


_STOP = object()  # queued by close(): the writer thread ends after this batch
_FLUSH = object()  # queued by flush(): write and announce what has gathered now

# How long written rows may wait before the ledger_rows_written listeners (the dashboards'
# rollups) hear of them. Each announcement costs about a millisecond of GIL-holding Python
# whatever its size (then a few microseconds a row): once per flush interval, that was a
# quarter of the writer's work and the longest stretch it kept the event loop waiting.
ANNOUNCE_EVERY_S = 0.5


class BufferedRecorder:
    def __init__(
        self, *, interval_s: float = 0.05, max_batch: int = 2000, announce_every_s: float = ANNOUNCE_EVERY_S
    ) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._interval_s = interval_s
        self._max_batch = max_batch
        self._announce_every_s = announce_every_s
        self._pending = 0  # submitted rows not yet written and announced
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._hurry = threading.Event()  # set by flush(): write what has gathered now
        # Written rows the listeners have not heard of yet (writer thread only).
        self._unannounced = Written([], [])
        self._unannounced_rows = 0  # the submitted rows behind them (still counted in _pending)
        self._announce_due = 0.0

    def submit(self, row: Row) -> None:
        with self._lock:
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="rana-ledger", daemon=True)
                self._thread.start()
        self._queue.put(row)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Block until every submitted row is written and announced (or the timeout passes)."""
        if self._pending:
            self._hurry.set()
            self._queue.put(_FLUSH)
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is pending, then stop the writer thread and close its connection."""
        self.flush(timeout_s)
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            self._hurry.set()
            thread.join(timeout_s)

    def _take_batch(self) -> list:
        """The first row, then what else arrives within one flush interval (cut short by flush()).

        The writer sleeps through the interval instead of waking for each row, so the serving
        thread is not interrupted (GIL hand-overs) once per row. An empty batch: it is time
        to announce what was written."""
        if self._unannounced_rows:
            try:
                first = self._queue.get(timeout=max(0.0, self._announce_due - time.monotonic()))
            except queue.Empty:
                return []
        else:
            first = self._queue.get()
        batch = [first]
        self._hurry.wait(self._interval_s)
        self._hurry.clear()
        while len(batch) < self._max_batch:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            stop = any(row is _STOP for row in batch)
            hurry = stop or any(row is _FLUSH for row in batch)
            batch = [row for row in batch if row is not _STOP and row is not _FLUSH]
            done = 0
            if batch:
                ledger_batch.begin()
                written = self._write_with_retry(batch)
                ledger_batch.finish()
                if written is not None and ledger_rows_written.has_listeners():
                    if not self._unannounced_rows:
                        self._announce_due = time.monotonic() + self._announce_every_s
                    self._unannounced.extend(written)
                    self._unannounced_rows += len(batch)
                else:
                    done += len(batch)
            if self._unannounced_rows and (hurry or time.monotonic() >= self._announce_due):
                written, self._unannounced = self._unannounced, Written([], [])
                ledger_batch.begin()
                close_old_connections()
                announce_rows(written)
                ledger_batch.finish()
                done += self._unannounced_rows
                self._unannounced_rows = 0
            if batch and settings.DEBUG:
                # DEBUG keeps every query in the connection's log (up to 9,000): in this
                # long-lived thread nothing else clears it, and the garbage collector would
                # walk it at every full collection.
                reset_queries()
            if done:
                with self._idle:
                    self._pending -= done
                    if not self._pending:
                        self._idle.notify_all()
            if stop:
                connection.close()
                return

    def _write_with_retry(self, batch: list) -> Written | None:
        """Write a batch; a busy (locked) database is waited out however long it lasts, since
        the rows are still in memory and the lock will go; other errors get five tries."""
        failures = 0
        while True:
            try:
                close_old_connections()
                return write_rows(batch, announce=False)
            except Exception as exc:
                connection.close()
                busy = is_database_busy(exc)
                failures += 0 if busy else 1
                if busy:
                    log.warning("ledger write of %d rows waits for a busy database: %s", len(batch), exc)
                else:
                    log.exception("ledger write of %d rows failed (try %d of 5)", len(batch), failures)
                if failures >= 5:
                    log.error("ledger rows dropped after 5 failed writes: %d", len(batch))
                    return None
                time.sleep(0.25 if busy else min(self._interval_s * 2**failures, 1.0))


class SyncRecorder:
    """Writes each row at once, on a helper thread, and waits for it: `submit` blocks its caller,
    the event loop too when called from async code. For tests (rows are there when a request
    returns), not for serving."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rana-ledger-sync")

    def submit(self, row: Row) -> None:
        self._executor.submit(self._write, row).result()

    @staticmethod
    def _write(row: Row) -> None:
        close_old_connections()
        write_rows([row])

    def flush(self, timeout_s: float = 10.0) -> bool:
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Close the helper thread's database connection."""
        self._executor.submit(lambda: connection.close()).result(timeout_s)


_recorder: BufferedRecorder | SyncRecorder | None = None
_recorder_lock = threading.Lock()


def get_recorder() -> BufferedRecorder | SyncRecorder:
    global _recorder
    if _recorder is None:
        with _recorder_lock:
            if _recorder is None:
                if settings.RANA_LEDGER_MODE == "sync":
                    _recorder = SyncRecorder()
                else:
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
