"""Celery's broker without a server: kombu's filesystem transport, plus redelivery after a kill.

kombu's filesystem transport deletes a message's file when a worker takes it and keeps the
unacknowledged message in memory only, so the task a worker was running when it died (SIGKILL,
the OOM killer, a power cut) was lost, acks_late or not. Here:

- a message is written under a temporary name and renamed into the queue folder, so no worker
  reads a half-written one;
- a worker takes a message by renaming its file into a folder of its own under `unacked_folder`,
  on whose lock file it holds an exclusive flock while it lives, and deletes the file once the
  message is acknowledged (or put back: rejected for requeue, or given back at a graceful stop);
- a folder whose lock can be taken belongs to a process that died: any worker (when it first
  polls, then every SWEEP_S) moves its files back into the queue, and their tasks run again.

Delivery is at least once, as with Redis, so tasks must be idempotent (RANA's are). One machine
only: every process sharing the folders must see the same local disk (flock, atomic renames).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import uuid
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)

SWEEP_S = 5.0
LOCK = "lock"


def transport_options(folder: Path, *, polling_interval_s: float = 0.5) -> dict[str, Any]:
    """The transport's folders under `folder` (one queue folder: producers and workers share it)."""
    queue = str(folder / "queue")
    return {
        "data_folder_in": queue,
        "data_folder_out": queue,
        "control_folder": str(folder / "control"),
        "unacked_folder": str(folder / "unacked"),
        "polling_interval": polling_interval_s,
    }


class Channel(filesystem.Channel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: Path | None = None  # this channel's folder of taken messages (made on first take)
        self._lock_fd: int | None = None
        self._taken: dict[str, Path] = {}  # delivery tag -> its file in the held folder
        self._no_ack_queues: set[str] = set()  # consumed without acks (remote control): not kept
        self._next_sweep = 0.0
        for folder in (self.data_folder_in, self.data_folder_out, self.control_folder, self.unacked_folder):
            Path(folder).mkdir(parents=True, exist_ok=True)

    @property
    def unacked_folder(self) -> Path:
        return Path(self.transport_options.get("unacked_folder", "unacked"))

    def _put(self, queue: str, payload: dict, **kwargs: Any) -> None:
        folder = Path(self.data_folder_out)
        name = f"{round(time.monotonic() * 1000):015d}_{uuid.uuid4()}.{queue}.msg"
        temporary = folder / f".{uuid.uuid4()}.tmp"
        try:
            with temporary.open("xb") as file:
                file.write(str_to_bytes(dumps(payload)))
                file.flush()
                os.fsync(file.fileno())
            os.rename(temporary, folder / name)
        except OSError as exc:
            raise ChannelError(f"Cannot add {name!r} to {folder}") from exc

    def _get(self, queue: str) -> dict:
        self._sweep_dead()
        wanted = f"{queue}.msg"
        inbox = Path(self.data_folder_in)
        for name in sorted(os.listdir(inbox)):
            if name.partition(".")[2] != wanted:
                continue
            path = self._held_folder() / name
            try:
                os.rename(inbox / name, path)
            except FileNotFoundError:
                continue  # another worker took it first
            payload = loads(bytes_to_str(path.read_bytes()))
            if queue in self._no_ack_queues:
                path.unlink()
            else:
                self._taken[payload["properties"]["delivery_tag"]] = path
            return payload
        raise Empty()

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        message = super().basic_get(queue, no_ack, **kwargs)
        if message is not None and no_ack:
            self._forget(message.delivery_tag)
        return message

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple)
        self._forget(delivery_tag)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue)  # a requeue puts a copy back first (_restore)
        self._forget(delivery_tag)

    def _restore(self, message: Any) -> None:
        super()._restore(message)
        self._forget(message.delivery_tag)

    def _forget(self, delivery_tag: str) -> None:
        path = self._taken.pop(delivery_tag, None)
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def close(self) -> None:
        super().close()  # gives back what was taken and not acknowledged
        if self._held is None:
            return
        if not any(self._held.glob("*.msg")):  # else the lock goes with the process: a sweep gives them back
            with contextlib.suppress(OSError):
                (self._held / LOCK).unlink()
                self._held.rmdir()
        os.close(self._lock_fd)
        self._held = self._lock_fd = None

    def _held_folder(self) -> Path:
        """Made under a name sweeps skip, locked, then renamed: never seen unlocked."""
        if self._held is None:
            pending = self.unacked_folder / f".new-{uuid.uuid4().hex}"
            pending.mkdir()
            fd = os.open(pending / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = self.unacked_folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(pending, held)
            self._held, self._lock_fd = held, fd
        return self._held

    def _sweep_dead(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_S
        for folder in self.unacked_folder.iterdir():
            if folder.name.startswith(".") or folder == self._held:
                continue
            try:
                fd = os.open(folder / LOCK, os.O_RDWR)
            except FileNotFoundError:
                continue  # being given back by another worker
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # its process lives
            try:
                self._give_back(folder)
            finally:
                os.close(fd)

    def _give_back(self, folder: Path) -> None:
        """A dead process's taken messages back into the queue (run again: at least once)."""
        messages = sorted(folder.glob("*.msg"))
        for path in messages:
            os.rename(path, Path(self.data_folder_out) / path.name)
        (folder / LOCK).unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()
        if messages:
            logger.warning("redelivering %d message(s) of a worker that died (%s)", len(messages), folder)


class Transport(filesystem.Transport):
    Channel = Channel
    default_connection_params: dict[str, Any] = {}  # no host (kombu would warn that none was given)
