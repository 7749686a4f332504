"""Test-only Celery tasks, loaded by the workers the tests start (`--include tests.celery_tasks`)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from celery import shared_task


@shared_task(ignore_result=True)
def slow_once(folder: str, seconds: float) -> None:
    """Each run leaves a mark; the first run takes `seconds` (long enough to be killed in), a
    redelivered one finishes at once. Its effect, the file `done`, is made once however many
    runs finish (idempotent), and each finished run adds a line to `finished`."""
    marks = Path(folder)
    first = not any(marks.glob("run-*"))
    (marks / f"run-{os.getpid()}-{time.monotonic_ns()}").touch()
    if first:
        time.sleep(seconds)
    with contextlib.suppress(FileExistsError), (marks / "done").open("x") as done:
        done.write(str(os.getpid()))
    with (marks / "finished").open("a") as finished:
        finished.write(f"{os.getpid()}\n")
