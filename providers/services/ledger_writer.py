"""The buffered ledger writer: every row on disk before it is acknowledged, then in the database.

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

The writer takes each row it reads back from memory rather than decoding its line again,
while at most MEMORY_ROWS wait; past that it decodes them. A database that is locked or down,
for any length of time, loses nothing and costs bounded memory: rows wait in the journal and
the writer retries (a backlog warning every 10 s past
BACKLOG_WARN_ROWS). A row the database refuses as such (integrity or data error) is set aside
in the journal folder's rejected.jsonl and logged. A graceful stop (SIGTERM, SIGINT,
interpreter exit) flushes and announces everything, then hands the signal to the handler that
was there before (the server's). After a hard kill, the dead process's journal is replayed by
a live sibling within REPLAY_EVERY_S, or by the process that replaces it when it starts (the
rollups of replayed rows are announced too). "sync" mode writes each row before `submit`
returns (the test suite's mode; no journal).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    DataError,
    IntegrityError,
    close_old_connections,
    connection,
    reset_queries,
)

from providers.models import Completion
from providers.signals import ledger_rows_written
from rana_site.db_busy import is_database_busy

from .journal import Journal, JournalReader, database_folder, dead_journals
from .journal_codec import CALL_PREFIX, call_request_id, decode, encode, encode_call
from .recorder import Position, Written, announce_rows, ledger_batch, ledger_lag, set_aside, write_rows
from .recorder_rows import PendingRow, Row

log = logging.getLogger("rana.ledger")


# How long written rows may wait before the ledger_rows_written listeners (the dashboards'
# rollups) hear of them. Each announcement costs about a millisecond of GIL-holding Python
# whatever its size (then a few microseconds a row): once per flush interval, that was a
# quarter of the writer's work and the longest stretch it kept the event loop waiting.
ANNOUNCE_EVERY_S = 0.5
REPLAY_EVERY_S = 5.0  # how often a live writer looks for journals of dead processes
OPEN_FOR_AT_MOST_S = 2 * 3600  # longer than any chain's deadline (3600 s at most)
BACKLOG_WARN_ROWS = 10_000
# Rows the writer takes from memory instead of decoding their journal line again (by line
# number), up to this many waiting: past it (a database that is slow or away) the rest are
# read back from the journal, so memory stays bounded.
MEMORY_ROWS = 5_000


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
        # Rows submitted and not yet read back, by line number: the writer takes these rather
        # than decoding the lines (a PendingRow is never changed once submitted).
        self._in_memory: dict[int, tuple[PendingRow, float]] = {}
        self._lines_read = 0  # lines of this process's journal the writer has read

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
                self._done = self._lines_read = 0
                self._in_memory = {}
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

    def submit(self, row: Row) -> None:
        line = encode(row)
        number = self._journal_here().append(line)
        if type(row) is PendingRow and len(self._in_memory) < MEMORY_ROWS:
            self._in_memory[number] = (row, time.time())
        if self._thread is None:
            self.start()
        self._wake.set()

    def call_started(self, attempt: PendingRow, completion: dict[str, Any] | None) -> None:
        """Journal a call in flight: the rows to write only if this process dies before the call
        (its attempt) or the request (`completion`, given on its first call) ends."""
        self._journal_here().append(encode_call(attempt, completion))
        if self._thread is None:
            self.start()

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
        if ledger_lag.on_backlog is not None:
            ledger_lag.on_backlog(self.backlog())
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
            in_memory = self._in_memory if reader.live is not None else {}
            for segment, _end, line in lines:
                self._lines_read += 1
                if line.startswith(CALL_PREFIX):  # a call in flight: keep its segment until its request ends
                    self._open.setdefault(call_request_id(line), (segment, time.monotonic()))
                    continue
                kept = in_memory.pop(self._lines_read, None)
                if kept is not None:
                    (row, submitted), kind = kept, "c" if kept[0].model is Completion else "a"
                else:
                    try:
                        kind, row, submitted = decode(line)
                    except Exception:
                        set_aside(self.journal_folder, line)
                        continue
                if kind == "c":
                    self._open.pop(str(row.fields["id"]), None)
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
            self._forget_read(in_memory)
            if len(lines) < self._max_batch:
                break
        self._warn_backlog()
        return wrote

    def _forget_read(self, in_memory: dict[int, tuple[PendingRow, float]]) -> None:
        """Drop rows whose lines were read before submit() kept them (it keeps a row just after
        appending its line, so the writer can be first): they were decoded instead."""
        read = self._lines_read
        while in_memory:
            number = next(iter(in_memory))
            if number > read:
                return
            in_memory.pop(number, None)

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


def database_journal_folder() -> Path:
    """This database's journals: RANA_JOURNAL_DIR, then a digest of the database settings."""
    db = settings.DATABASES[DEFAULT_DB_ALIAS]
    identity = f"{db['ENGINE']}|{db.get('HOST', '')}|{db.get('PORT', '')}|{db['NAME']}"
    return database_folder(Path(settings.RANA_JOURNAL_DIR), identity)
