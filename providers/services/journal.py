"""The ledger journal: every ledger row is appended to a local file before it is acknowledged.

Each serving process owns one folder, `<root>/<database>/<host>-<pid>-<random>/`, holds an
exclusive lock (flock) on its `lock` file for as long as it lives, and appends one line per
row (orjson) to numbered segment files (`seg-000001.jsonl`, ...; a new one every
SEGMENT_BYTES). An append is one write(2) on an O_APPEND descriptor: when the process dies,
however it dies, the kernel keeps what was written. `<database>` is a digest of the database
settings, so journals are only ever replayed into the database they were written for.

The process's own writer thread reads its journal in order (JournalReader), writes the rows
to the database in batches and deletes each segment once every row in it is committed. A
journal whose lock can be taken belongs to a dead process: a live sibling (at start-up and
then periodically) takes the lock, replays it (rows are idempotent: completions are upserted
by id, attempts inserted with ON CONFLICT DO NOTHING on their natural key) and removes it.
Memory stays bounded whatever the database does: rows wait on disk, not in a queue.

Django-free: the recorder decides where the root is and what a row means.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("rana.ledger")

SEGMENT_BYTES = 4 * 1024 * 1024

# write(2) called with the GIL held (PyDLL): os.write releases the GIL for every line, and on a
# serving process that hands the interpreter to the ledger writer thread (or any other) in the
# middle of a request, four times per request: measured, +0.2 ms of CPU per request. A write
# of a few hundred bytes to the page cache takes a microsecond or two; holding the GIL for it
# costs less than giving it away.
_libc = ctypes.PyDLL(None, use_errno=True)
_write = _libc.write
_write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
_write.restype = ctypes.c_ssize_t


def _write_all(fd: int, data: bytes) -> None:
    view = data
    while view:
        written = _write(fd, view, len(view))
        if written < 0:
            errno = ctypes.get_errno()
            if errno == 4:  # EINTR
                continue
            raise OSError(errno, os.strerror(errno))
        view = view[written:]


_PREFIX, _SUFFIX = "seg-", ".jsonl"


def database_folder(root: Path, identity: str) -> Path:
    """Where journals for one database live (a digest of its settings, never the password)."""
    return root / hashlib.sha256(identity.encode()).hexdigest()[:16]


def _segment_name(number: int) -> str:
    return f"{_PREFIX}{number:06d}{_SUFFIX}"


def _segments(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob(f"{_PREFIX}*{_SUFFIX}"))


class Journal:
    """This process's journal: append lines; thread-safe; one folder per process."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self.folder = folder / name
        self.folder.mkdir()
        self.pid = os.getpid()
        self._lock_fd = os.open(self.folder / "lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until the process ends
        self._lock = threading.Lock()
        self.segment = 0  # the number of the segment being appended to
        self._fd = -1
        self._size = 0
        self.appended = 0  # lines appended so far (a sequence number)
        with self._lock:
            self._rotate()

    def _rotate(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self.segment += 1
        path = self.folder / _segment_name(self.segment)
        self._fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        self._size = 0

    def append(self, line: bytes) -> int:
        """Append one line (ending in \\n); returns its sequence number (1, 2, ...)."""
        with self._lock:
            _write_all(self._fd, line)
            self._size += len(line)
            self.appended += 1
            if self._size >= SEGMENT_BYTES:
                self._rotate()
            return self.appended

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def remove(self) -> None:
        """At a clean stop, once every line is in the database: delete the folder."""
        shutil.rmtree(self.folder, ignore_errors=True)


def segment_number(path: Path) -> int:
    return int(path.name[len(_PREFIX) : -len(_SUFFIX)])


class JournalReader:
    """Reads a journal folder's complete lines in order, and deletes consumed segments.

    Each line comes as (segment number, offset just past the line, line): a position the
    writer can record as committed. `live`: the journal being appended to in this process
    (its current segment is never deleted); None for a dead process's folder (everything in
    it is final, and a torn last line was never acknowledged)."""

    def __init__(self, folder: Path, live: Journal | None = None) -> None:
        self.folder = folder
        self.live = live
        self._segment: Path | None = None
        self._offset = 0  # bytes of the current segment read so far
        self._partial = b""  # a line not yet complete (its bytes end at _offset)
        self._consumed: list[Path] = []  # read to their end, not yet deleted

    def _current_segment(self) -> int:
        return self.live.segment if self.live is not None else 1 << 60

    def read(self, max_lines: int) -> list[tuple[int, int, bytes]]:
        """Up to max_lines complete lines not read yet."""
        lines: list[tuple[int, int, bytes]] = []
        while len(lines) < max_lines:
            if self._segment is None:
                pending = [p for p in _segments(self.folder) if p not in self._consumed]
                if not pending:
                    break
                self._segment, self._offset, self._partial = pending[0], 0, b""
            number = segment_number(self._segment)
            chunk = self._read_from(self._segment, max_lines - len(lines))
            if chunk:
                start = self._offset - len(chunk) - len(self._partial)
                data = self._partial + chunk
                *complete, self._partial = data.split(b"\n")
                for line in complete:
                    start += len(line) + 1
                    if line:
                        lines.append((number, start, line))
                if len(lines) >= max_lines:
                    break
                continue
            if number >= self._current_segment():
                break  # still being written: come back later
            if self._partial and self.live is not None:
                break  # a closed live segment always ends in a newline; wait for its tail
            self._consumed.append(self._segment)
            self._segment = None
        return lines

    def _read_from(self, path: Path, lines_wanted: int) -> bytes:
        """The next bytes of a segment, ending at a newline when there is one (so a read of
        many lines does not run far past what was asked)."""
        try:
            with path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read(min(1024 * 1024, max(4096, lines_wanted * 1024)))
        except FileNotFoundError:
            return b""
        cut = data.rfind(b"\n") + 1
        if 0 < cut < len(data):
            data = data[:cut]
        self._offset += len(data)
        return data

    def commit(self, keep_from: int | None = None) -> None:
        """Every line read so far is in the database: delete the segments they came from,
        except segment `keep_from` and later (they hold rows still needed)."""
        kept = []
        for path in self._consumed:
            if keep_from is not None and segment_number(path) >= keep_from:
                kept.append(path)
            else:
                path.unlink(missing_ok=True)
        self._consumed = kept


def dead_journals(folder: Path, own: Path | None) -> Iterator[tuple[Path, int]]:
    """Folders under `folder` whose process is gone, each with its lock held (fd) while the
    caller replays it: close the fd after removing the folder."""
    if not folder.is_dir():
        return
    for candidate in sorted(folder.iterdir()):
        if candidate == own or not candidate.is_dir():
            continue
        try:
            fd = os.open(candidate / "lock", os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # alive, or being replayed by a sibling
            continue
        yield candidate, fd
