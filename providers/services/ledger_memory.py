"""RANA_LEDGER_MODE=memory: the write-behind ledger with its journal off, to measure the journal.

Rows wait in this process's memory and one thread writes them in batches, as the ledger did
before the journal: a hard kill loses the rows not yet written (up to RANA_LEDGER_FLUSH_MS
of them, more when the database is slow), and a database outage grows memory without bound.
It exists so that bench/gateway_overhead.py can report what the journal costs on the same
code (`--env RANA_LEDGER_MODE=memory`); never serve traffic with it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from django.db import close_old_connections, connection

from .ledger_writer import ANNOUNCE_EVERY_S
from .recorder import Written, announce_rows, ledger_batch, ledger_lag, write_rows
from .recorder_rows import PendingRow, Row

log = logging.getLogger("rana.ledger")


class MemoryRecorder:
    def __init__(self, *, interval_s: float = 0.05, max_batch: int = 2000) -> None:
        self._interval_s, self._max_batch = interval_s, max_batch
        self._rows: collections.deque[tuple[Row, float]] = collections.deque()
        self._wake, self._hurry = threading.Event(), threading.Event()
        self._idle = threading.Condition()
        self._submitted = self._done = 0
        self._thread: threading.Thread | None = None
        self._unannounced = Written([], [])
        self._unannounced_rows = 0
        self._announce_due = 0.0
        self._stopping = False

    def submit(self, row: Row) -> None:
        self._rows.append((row, time.time()))
        self._submitted += 1
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rana-ledger", daemon=True)
            self._thread.start()
        self._wake.set()

    def call_started(self, attempt: PendingRow, completion: dict[str, Any] | None) -> None:
        """Nothing: without a journal there is nowhere to keep a call in flight."""

    def backlog(self) -> int:
        return self._submitted - self._done

    def flush(self, timeout_s: float = 10.0) -> bool:
        target = self._submitted
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
        """Write what is pending, then stop the writer thread (which closes its connection)."""
        self.flush(timeout_s)
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping = True
            self._wake.set()
            self._hurry.set()
            thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._step()
            except Exception:
                log.exception("the in-memory ledger writer failed; it goes on after a pause")
                connection.close()
                time.sleep(1.0)

    def _step(self) -> None:
        wait = max(0.0, self._announce_due - time.monotonic()) if self._unannounced_rows else None
        if self._wake.wait(wait):
            self._hurry.wait(self._interval_s)  # gather a batch, as the journaled writer does
            self._wake.clear()
        hurry, rows = self._hurry.is_set(), self._rows
        self._hurry.clear()
        while rows:
            batch = [rows.popleft() for _ in range(min(len(rows), self._max_batch))]
            ledger_batch.begin()
            close_old_connections()
            written = write_rows([row for row, _ in batch], announce=False)
            now = time.time()
            ledger_lag.add((now - submitted) * 1000 for _, submitted in batch)
            ledger_batch.finish()
            if not self._unannounced_rows:
                self._announce_due = time.monotonic() + ANNOUNCE_EVERY_S
            self._unannounced.extend(written)
            self._unannounced_rows += len(batch)
        if self._unannounced_rows and (hurry or time.monotonic() >= self._announce_due):
            written, self._unannounced = self._unannounced, Written([], [])
            announce_rows(written)
            with self._idle:
                self._done += self._unannounced_rows
                self._unannounced_rows = 0
                self._idle.notify_all()
        if self._stopping:
            connection.close()
