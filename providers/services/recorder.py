"""The ledger writer: every attempt reaches the database within 100 ms of ending.

In "buffered" mode (the default) rows go to a write-behind buffer: one daemon thread
drains it and writes what has gathered in one transaction, RANA_LEDGER_FLUSH_MS after the
first row of a batch (at once when someone is waiting in flush()), so the request path never
waits on the database and the writer's work (which holds the GIL) comes in few, large
batches rather than one transaction per row. A graceful
stop (SIGTERM, SIGINT, interpreter exit) flushes everything; a hard kill loses at most the
rows of the last flush interval. "sync" mode writes at once on the caller's thread.
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
from django.db import close_old_connections, connection, transaction

from providers.models import Attempt, Completion
from providers.signals import ledger_rows_written
from rana_site.db_busy import is_database_busy

log = logging.getLogger("rana.ledger")

_COMPLETION_UPDATE_FIELDS = [
    f.name for f in Completion._meta.concrete_fields if f.name not in ("id", "created_at")
]


@dataclass(frozen=True, slots=True)
class PendingRow:
    """A ledger row as its field values: the model instance is built on the writer thread,
    off the request path (a Django model's __init__ is the costliest step of recording)."""

    model: type[Completion] | type[Attempt]
    fields: dict[str, Any]

    def build(self) -> Completion | Attempt:
        return self.model(**self.fields)


Row = Completion | Attempt | PendingRow


def write_rows(rows: Iterable[Row]) -> None:
    """Write one batch in one transaction: completions (upserted) first, then attempts."""
    completions: dict = {}
    attempts: list[Attempt] = []
    for pending in rows:
        row = pending.build() if isinstance(pending, PendingRow) else pending
        if isinstance(row, Completion):
            completions[row.pk] = row  # the latest state of a completion wins
        else:
            attempts.append(row)
    with transaction.atomic():
        if completions:
            Completion.objects.bulk_create(
                list(completions.values()),
                update_conflicts=True,
                unique_fields=["id"],
                update_fields=_COMPLETION_UPDATE_FIELDS,
            )
        if attempts:
            Attempt.objects.bulk_create(attempts)
        if ledger_rows_written.has_listeners():
            written = [*completions.values(), *attempts]
            transaction.on_commit(lambda: _announce(written))


def _announce(rows: list[Completion | Attempt]) -> None:
    """Tell listeners (the dashboards' rollups) which rows landed; their errors are only logged."""
    for receiver, result in ledger_rows_written.send_robust(None, rows=rows):
        if isinstance(result, Exception):
            log.error("ledger_rows_written receiver %r failed: %r", receiver, result)


_STOP = object()  # queued by close(): the writer thread ends after this batch


class BufferedRecorder:
    def __init__(self, *, interval_s: float = 0.05, max_batch: int = 2000) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._interval_s = interval_s
        self._max_batch = max_batch
        self._pending = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._hurry = threading.Event()  # set by flush(): write what has gathered now

    def submit(self, row: Row) -> None:
        with self._lock:
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="rana-ledger", daemon=True)
                self._thread.start()
        self._queue.put(row)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Block until every submitted row is written (or the timeout passes)."""
        if self._pending:
            self._hurry.set()
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
        thread is not interrupted (GIL hand-overs) once per row."""
        batch = [self._queue.get()]
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
            batch = [row for row in batch if row is not _STOP]
            if batch:
                self._write_with_retry(batch)
            with self._idle:
                self._pending -= len(batch)
                if not self._pending:
                    self._idle.notify_all()
            if stop:
                connection.close()
                return

    def _write_with_retry(self, batch: list) -> None:
        """Write a batch; a busy (locked) database is waited out however long it lasts, since
        the rows are still in memory and the lock will go; other errors get five tries."""
        failures = 0
        while True:
            try:
                close_old_connections()
                write_rows(batch)
                return
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
                    return
                time.sleep(0.25 if busy else min(self._interval_s * 2**failures, 1.0))


class SyncRecorder:
    """Writes each row at once and waits (on a helper thread, so it is safe from async code)."""

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
