"""The ledger writer: every row is on disk before it is acknowledged, and in the database soon after.

In "buffered" mode (the default) `submit` appends the row to this process's journal
(journal.py: one write(2), which the kernel keeps however the process dies) and returns. One
daemon thread reads the journal and writes what has gathered in one transaction,
RANA_LEDGER_FLUSH_MS after the first row of a batch (at once when someone is waiting in
flush()), so the request path never waits on the database and the writer's work (which
holds the GIL) comes in few, large batches. Rows go from their values straight to one
prepared insert (no model instances, no per-batch statement compiling); completions are
upserted by id and attempts inserted with ON CONFLICT DO NOTHING on (completion,
step, retry), so writing a row twice (a replay after a crash between commit and the journal's
cleanup) changes nothing. The ledger_rows_written listeners (the dashboards' rollups) hear of
the written rows every ANNOUNCE_EVERY_S in one announcement rather than after every batch.

A database that is locked or down, for any length of time, loses nothing and costs no memory:
rows wait in the journal and the writer retries (a backlog warning every 10 s past
BACKLOG_WARN_ROWS). A row the database refuses as such (integrity or data error) is set aside
in the journal folder's rejected.jsonl and logged. A graceful stop (SIGTERM, SIGINT,
interpreter exit) flushes and announces everything, then hands the signal to the handler that
was there before (the server's). After a hard kill, the dead process's journal is replayed by
a live sibling within REPLAY_EVERY_S, or by the process that replaces it when it starts (the
rollups of replayed rows are announced too). "sync" mode writes each row before `submit`
returns (the test suite's mode; no journal).
"""

from __future__ import annotations

import atexit
import bisect
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    DataError,
    IntegrityError,
    close_old_connections,
    connection,
    connections,
    models,
    reset_queries,
    transaction,
)

from providers.models import Attempt, Completion, JournalCursor
from providers.signals import ledger_rows_written
from rana_site.db_busy import is_database_busy

from .journal import Journal, JournalReader, database_folder, dead_journals
from .journal_codec import decode, encode
from .recorder_rows import PendingRow, Row

__all__ = [
    "BufferedRecorder",
    "PendingRow",
    "Row",
    "SyncRecorder",
    "get_recorder",
    "ledger_flush",
    "write_rows",
]

log = logging.getLogger("rana.ledger")

_ATTEMPT_KEY = ("completion", "step_position", "retry_index")  # Attempt's attempt_unique_try
_COMPLETION_UPDATE_FIELDS = [
    f.name for f in Completion._meta.concrete_fields if f.name not in ("id", "created_at")
]


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
    """Write one batch in one transaction: completions (upserted) first, then attempts.

    With `announce`, ledger_rows_written listeners hear of the rows once the transaction
    commits; without, the caller announces what this returns (announce_rows) when it likes.
    `committed`: the journal position these rows reach, recorded in the same transaction."""
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
        if committed is not None:
            journal, segment, offset = committed
            JournalCursor.objects.update_or_create(
                journal=journal, defaults={"committed_segment": segment, "committed_offset": offset}
            )
        if announce and ledger_rows_written.has_listeners():
            transaction.on_commit(lambda: announce_rows(written))
    return written


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
        else:
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

    def add(self, lags_ms: Iterable[float]) -> None:
        edges = self.EDGES_MS
        for lag in lags_ms:
            self.counts[bisect.bisect_left(edges, lag)] += 1
            self.max_ms = max(self.max_ms, lag)

    def as_dict(self) -> dict[str, Any]:
        return {"edges_ms": list(self.EDGES_MS), "counts": list(self.counts), "max_ms": round(self.max_ms, 3)}


ledger_lag = LagHistogram()  # this process's writer: submit -> commit, per row


# How long written rows may wait before the ledger_rows_written listeners (the dashboards'
# rollups) hear of them. Each announcement costs about a millisecond of GIL-holding Python
# whatever its size (then a few microseconds a row): once per flush interval, that was a
# quarter of the writer's work and the longest stretch it kept the event loop waiting.
ANNOUNCE_EVERY_S = 0.5
REPLAY_EVERY_S = 5.0  # how often a live writer looks for journals of dead processes
OPEN_FOR_AT_MOST_S = 2 * 3600  # longer than any chain's deadline (3600 s at most)
BACKLOG_WARN_ROWS = 10_000


class BufferedRecorder:
    """Journal first, database soon after: `submit` appends the row to this process's journal
    (journal.py) and returns; one writer thread reads the journal, writes what has gathered
    in one transaction RANA_LEDGER_FLUSH_MS after the first row of a batch (at once when
    someone waits in flush()), deletes the consumed segments, and replays the journals of
    dead processes. Nothing waits in memory: a database that is locked or down for any
    length of time only makes the journal longer."""

    def __init__(
        self,
        *,
        journal_folder: Path | None = None,
        interval_s: float = 0.05,
        max_batch: int = 2000,
        announce_every_s: float = ANNOUNCE_EVERY_S,
        replay_every_s: float = REPLAY_EVERY_S,
    ) -> None:
        # this database's journals (one folder per process)
        self.journal_folder = journal_folder or database_journal_folder()
        self._interval_s = interval_s
        self._max_batch = max_batch
        self._announce_every_s = announce_every_s
        self._replay_every_s = replay_every_s
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._journal: Journal | None = None
        self._reader: JournalReader | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()  # rows were appended
        self._hurry = threading.Event()  # set by flush(): write what has gathered now
        self._stopping = False
        self._done = 0  # journal lines written and announced
        # Written rows the listeners have not heard of yet (writer thread only).
        self._unannounced = Written([], [])
        self._unannounced_rows = 0  # the journal lines behind them (not yet in _done)
        self._announce_due = 0.0
        self._next_replay = 0.0
        self._backlog_logged = 0.0
        self._open: dict[Any, tuple[int, float]] = {}  # requests in flight: (first segment, since)
        self._unannounced_to: Position | None = None

    # -- the request path ----------------------------------------------------------------------
    def _journal_here(self) -> Journal:
        """This process's journal, opened on first use (and again in a forked child)."""
        journal = self._journal
        if journal is not None and journal.pid == os.getpid():
            return journal
        with self._lock:
            if self._journal is None or self._journal.pid != os.getpid():
                self._journal = Journal(self.journal_folder)
                self._reader = JournalReader(self._journal.folder, self._journal)
                self._done = 0
                self._thread = None
            return self._journal

    def start(self) -> None:
        """Open the journal and start the writer (which first replays dead processes' journals)."""
        self._journal_here()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="rana-ledger", daemon=True)
                self._thread.start()

    def submit(self, row: Row, *, provisional: bool = False) -> None:
        """Journal a row. `provisional`: the row to write only if this process dies first (a
        request in flight, a call in flight); its final row, submitted later, replaces it."""
        self._journal_here().append(encode(row, provisional=provisional))
        if self._thread is None or not self._thread.is_alive():
            self.start()
        if not provisional:
            self._wake.set()

    def backlog(self) -> int:
        """Journal lines of this process not yet written and announced."""
        journal = self._journal
        return 0 if journal is None else journal.appended - self._done

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Block until every row submitted so far is written and announced (or the timeout)."""
        journal = self._journal
        if journal is None or journal.pid != os.getpid():
            return True
        target = journal.appended
        if self._done >= target:
            return True
        self._hurry.set()
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._done < target:
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
            self._stopping = True
        if thread is not None and thread.is_alive():
            self._wake.set()
            self._hurry.set()
            thread.join(timeout_s)
        journal = self._journal
        if journal is not None and journal.pid == os.getpid() and self.backlog() == 0:
            journal.close()
            journal.remove()
            self._journal = None

    # -- the writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        """The writer's loop. Nothing may end it but close(): an error is logged and the loop
        goes on (the rows are in the journal, so nothing is lost by trying again later)."""
        while True:
            try:
                if self._step():
                    return
            except Exception:
                log.exception("the ledger writer failed; it goes on after a pause")
                connection.close()
                time.sleep(1.0)

    def _step(self) -> bool:
        """One turn of the writer: replay the dead if due, wait, write, announce. True: stop."""
        reader = self._reader
        assert reader is not None
        if time.monotonic() >= self._next_replay:
            self._next_replay = time.monotonic() + self._replay_every_s
            self._replay_dead()
        wait = self._replay_every_s
        if self._unannounced_rows:
            wait = min(wait, max(0.0, self._announce_due - time.monotonic()))
        woke = self._wake.wait(wait)
        if woke:
            # Sleep through the interval instead of waking for each row, so the serving
            # thread is not interrupted (GIL hand-overs) once per row.
            self._hurry.wait(self._interval_s)
            self._wake.clear()
        hurry = self._hurry.is_set() or self._stopping
        self._hurry.clear()
        wrote = self._drain(reader)
        if self._unannounced_rows and (hurry or time.monotonic() >= self._announce_due):
            self._announce()
        if wrote and settings.DEBUG:
            # DEBUG keeps every query in the connection's log (up to 9,000): in this
            # long-lived thread nothing else clears it, and the garbage collector would
            # walk it at every full collection.
            reset_queries()
        if self._stopping and self.backlog() <= 0 and not self._unannounced_rows:
            connection.close()
            return True
        return False

    def _drain(self, reader: JournalReader) -> int:
        """Write every complete journal line there is, a batch per transaction."""
        wrote = 0
        while lines := reader.read(self._max_batch):
            ledger_batch.begin()
            rows, lags = [], []
            for segment, _end, line in lines:
                try:
                    kind, row, submitted = decode(line)
                except Exception:
                    set_aside(self.journal_folder, line)
                    continue
                if kind == "r":  # a request in flight: keep its segment until it ends
                    self._open[row.fields["id"]] = (segment, time.monotonic())
                elif kind in ("c", "a"):
                    if kind == "c":
                        self._open.pop(row.fields["id"], None)
                    rows.append(row)
                    lags.append(submitted)
            position = (reader.folder.name, lines[-1][0], lines[-1][1])
            written = self._write_with_retry(rows, reader.folder, position) if rows else Written([], [])
            reader.commit(keep_from=self._keep_from())
            now = time.time()
            ledger_lag.add((now - submitted) * 1000 for submitted in lags)
            ledger_batch.finish()
            wrote += len(lines)
            self._account(len(lines), written, position)
            if len(lines) < self._max_batch:
                break
        self._warn_backlog()
        return wrote

    def _keep_from(self) -> int | None:
        """The oldest segment a request still in flight started in (None: none in flight).
        Requests open for longer than OPEN_FOR_AT_MOST_S (past any chain's deadline) are
        forgotten: a final row that never comes must not keep the journal forever."""
        if not self._open:
            return None
        cutoff = time.monotonic() - OPEN_FOR_AT_MOST_S
        for request_id in [k for k, (_, opened) in self._open.items() if opened < cutoff]:
            del self._open[request_id]
        return min((segment for segment, _ in self._open.values()), default=None)

    def _account(self, lines: int, written: Written, position: Position) -> None:
        if ledger_rows_written.has_listeners():
            if not self._unannounced_rows:
                self._announce_due = time.monotonic() + self._announce_every_s
            self._unannounced.extend(written)
            self._unannounced_rows += lines
            self._unannounced_to = position
            return
        self._finished(lines)

    def _announce(self) -> None:
        written, self._unannounced = self._unannounced, Written([], [])
        ledger_batch.begin()
        close_old_connections()
        announce_rows(written)
        if self._unannounced_to is not None:
            from .journal_replay import record_announced

            record_announced(self._unannounced_to)
        ledger_batch.finish()
        lines, self._unannounced_rows = self._unannounced_rows, 0
        self._finished(lines)

    def _finished(self, lines: int) -> None:
        with self._idle:
            self._done += lines
            self._idle.notify_all()

    def _warn_backlog(self) -> None:
        backlog = self.backlog()
        now = time.monotonic()
        if backlog >= BACKLOG_WARN_ROWS and now - self._backlog_logged >= 10:
            self._backlog_logged = now
            log.warning("ledger journal backlog: %d rows wait for the database (on disk)", backlog)

    def _replay_dead(self) -> None:
        """Write what dead processes' journals still hold, then remove them."""
        own = self._journal.folder if self._journal is not None else None
        try:
            found = list(dead_journals(self.journal_folder, own))
        except OSError:
            log.exception("could not look for dead ledger journals")
            return
        for folder, lock_fd in found:
            try:
                from .journal_replay import replay_journal

                rows = replay_journal(folder, self._write_with_retry, self._max_batch)
                shutil.rmtree(folder, ignore_errors=True)
                log.warning("replayed %d ledger rows from a dead process's journal (%s)", rows, folder.name)
            finally:
                os.close(lock_fd)

    def _write_with_retry(
        self, batch: list[PendingRow], folder: Path, committed: Position | None = None
    ) -> Written:
        """Write a batch, however long the database is busy or away: the rows are safe in the
        journal meanwhile. A row the database refuses as such (integrity or data errors) is
        set aside in the journal folder's rejected.jsonl, logged, and never retried forever."""
        failures = 0
        while True:
            try:
                close_old_connections()
                return write_rows(batch, announce=False, committed=committed)
            except (IntegrityError, DataError) as exc:
                connection.close()
                failures += 1
                if failures < 3:
                    log.warning("ledger write of %d rows refused (try %d): %s", len(batch), failures, exc)
                    time.sleep(0.1 * failures)
                    continue
                return self._write_one_by_one(batch, folder, committed)
            except Exception as exc:
                connection.close()
                failures += 1
                wait = 0.25 if is_database_busy(exc) else min(self._interval_s * 2**failures, 5.0)
                if failures == 1 or failures % 20 == 0:
                    log.warning(
                        "ledger write of %d rows waits for the database (try %d; the rows are in the "
                        "journal): %s",
                        len(batch),
                        failures,
                        exc,
                    )
                time.sleep(wait)

    def _write_one_by_one(self, batch: list[PendingRow], folder: Path, committed: Position | None) -> Written:
        written = Written([], [])
        rejected = []
        for index, row in enumerate(batch):
            try:
                close_old_connections()
                last = index == len(batch) - 1
                written.extend(write_rows([row], announce=False, committed=committed if last else None))
            except (IntegrityError, DataError) as exc:
                connection.close()
                rejected.append(encode(row))
                log.error(
                    "ledger row refused by the database, kept in %s/rejected.jsonl: %s",
                    self.journal_folder,
                    exc,
                )
        if rejected:  # beside the journals (a replayed journal's own folder is removed)
            with (self.journal_folder / "rejected.jsonl").open("ab") as handle:
                handle.writelines(rejected)
        return written


class SyncRecorder:
    """Writes each row at once, on a helper thread, and waits for it: `submit` blocks its caller,
    the event loop too when called from async code. For tests (rows are there when a request
    returns), not for serving."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rana-ledger-sync")

    def submit(self, row: Row, *, provisional: bool = False) -> None:
        if provisional:  # nothing to journal: the row is written before submit returns
            return
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


def database_journal_folder() -> Path:
    """This database's journals: RANA_JOURNAL_DIR, then a digest of the database settings."""
    db = settings.DATABASES[DEFAULT_DB_ALIAS]
    identity = f"{db['ENGINE']}|{db.get('HOST', '')}|{db.get('PORT', '')}|{db['NAME']}"
    return database_folder(Path(settings.RANA_JOURNAL_DIR), identity)


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
