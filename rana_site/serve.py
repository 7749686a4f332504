"""scripts/serve: granian's command line from RANA's settings, then granian in this process.

    python -m rana_site.serve        (scripts/serve runs this; it expects a migrated database)

The settings come from the environment or the .env file, as everywhere else (README,
"Configuration"). Granian replaces this process (exec), so the PID scripts/serve started with is
granian's master, the one a supervisor watches and signals.

What it is asked to do:
- a worker that dies (a crash, the kernel's OOM killer, kill -9, a SIGTERM sent to the worker
  alone) is replaced at once; its open connections are lost, the other workers go on serving
  from the shared listening socket. The same worker dying again within 5.5 s of being replaced
  is taken for a crash loop: the master exits (status 1) for its supervisor to restart;
- SIGTERM or SIGINT to the master stops accepting, lets in-flight requests finish for up to
  RANA_SHUTDOWN_TIMEOUT_S, then runs each worker's ASGI lifespan shutdown (which writes the
  ledger's pending rows) before exiting; a worker still busy after that is killed;
- a request head must arrive within RANA_HEADER_TIMEOUT_S (idle keep-alive connections are
  closed after it too), and a worker holds at most RANA_MAX_CONNECTIONS connections: past it,
  granian stops accepting and new connections wait in the listen backlog;
- a worker whose master dies (kill -9, the OOM killer) stops too, gracefully, instead of
  serving on as an orphan that keeps the port from the master a supervisor restarts
  (`exit_with_master`, called by rana_site.asgi in each worker).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import select
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

APP = "rana_site.asgi:application"
OPEN_FILES_WANTED = 65536  # every connection is a descriptor; the usual soft limit is 1024
MASTER_PID = "RANA_SERVE_MASTER_PID"  # set for granian's master, so its workers know it
_PR_SET_PDEATHSIG = 1


def _check(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise SystemExit(f"{name}={value:g} is out of range: granian accepts {low:g} to {high:g}.")


def granian_args(settings: Any) -> list[str]:
    """granian's options for these settings (RANA_HOST, RANA_PORT, RANA_WORKERS, ...)."""
    header_ms = round(settings.RANA_HEADER_TIMEOUT_S * 1000)
    _check("RANA_WORKERS", settings.RANA_WORKERS, 1, 512)
    _check("RANA_HEADER_TIMEOUT_S", settings.RANA_HEADER_TIMEOUT_S, 0.001, 60)
    _check("RANA_SHUTDOWN_TIMEOUT_S", settings.RANA_SHUTDOWN_TIMEOUT_S, 1, 1800)
    _check("RANA_MAX_CONNECTIONS", settings.RANA_MAX_CONNECTIONS, 1, 1_000_000)
    return [
        "--interface", "asgi",
        "--host", settings.RANA_HOST,
        "--port", str(settings.RANA_PORT),
        "--workers", str(settings.RANA_WORKERS),
        "--no-ws",
        "--log-level", "warning",
        "--respawn-failed-workers",
        "--workers-kill-timeout", str(settings.RANA_SHUTDOWN_TIMEOUT_S),
        "--backpressure", str(settings.RANA_MAX_CONNECTIONS),
        "--backlog", str(max(1024, settings.RANA_MAX_CONNECTIONS)),
        "--http1-header-read-timeout", str(header_ms),
        APP,
    ]  # fmt: skip


def _raise_open_files_limit() -> None:
    """Lift the soft limit on open descriptors toward the hard one (inherited by the workers)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_WANTED)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def exit_with_master(timeout_s: float) -> None:
    """In a worker of the master this module started: when the master dies, stop as granian
    stops (SIGTERM: in-flight requests finish, then the lifespan shutdown), and be gone within
    `timeout_s` whatever is still running. Elsewhere (tests, manage.py, other servers) nothing
    happens."""
    master = int(os.environ.get(MASTER_PID, "") or 0)
    if not sys.platform.startswith("linux") or not master:
        return
    if os.getppid() != master and _running(master):
        return  # a process the master did not start itself
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)  # at once, from the kernel

    starting = signal.getsignal(signal.SIGTERM)  # granian's worker puts its own in place later

    def watch() -> None:
        try:
            with contextlib.suppress(InterruptedError):
                select.select([os.pidfd_open(master)], [], [])  # readable once it has exited
        except OSError:  # it is gone already, or no pidfd (Linux before 5.3): look once a second
            while os.getppid() == master:
                time.sleep(1.0)
        deadline = time.monotonic() + timeout_s
        if signal.getsignal(signal.SIGTERM) is starting:
            # The master died while this worker was starting: the kernel's SIGTERM reached the
            # start-up handler, not granian's. Send it again once granian listens for it.
            while signal.getsignal(signal.SIGTERM) is starting and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(max(0.0, deadline - time.monotonic()))
        os.kill(os.getpid(), signal.SIGKILL)  # still here: what was in flight is given up

    threading.Thread(target=watch, name="rana-master-watch", daemon=True).start()


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess mode


def metrics_folder_prepare(settings: Any) -> None:
    """RANA_METRICS=1: the workers keep their series in RANA_METRICS_DIR (prometheus_client's
    multiprocess mode), emptied now: counters start from zero with the master, as Prometheus
    expects of a restarted target. Off: the variable is removed, nothing is written."""
    if not settings.RANA_METRICS:
        os.environ.pop(MULTIPROC_ENV, None)
        return
    folder = Path(settings.RANA_METRICS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.glob("*.db"):
        path.unlink()
    os.environ[MULTIPROC_ENV] = str(folder)


def metrics_worker_start() -> None:
    """In a worker (called by rana_site.asgi): the live gauges of workers that died, the one this
    worker replaces among them, are dropped (mark_process_dead); their counters and histograms
    stay, so totals never go back. Nothing happens outside multiprocess mode."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder or not Path(folder).is_dir():
        return
    from prometheus_client import multiprocess

    pids = set()
    for path in Path(folder).glob("*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit():
            pids.add(int(pid))
    for pid in pids - {os.getpid()}:
        if not _running(pid):
            multiprocess.mark_process_dead(pid, folder)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rana_site.settings")
    from django.conf import settings

    args = granian_args(settings)
    _raise_open_files_limit()
    metrics_folder_prepare(settings)
    os.environ[MASTER_PID] = str(os.getpid())  # granian keeps this PID (exec)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "granian", *args])  # noqa: S606 (no shell wanted)


if __name__ == "__main__":
    main()
