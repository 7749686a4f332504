"""An event-loop lag probe for benchmarks: off unless RANA_LOOP_LAG_DIR is set.

A task sleeps INTERVAL_S and records how late it wakes, into a histogram: the time the loop
could not run anything else (a callback, a request, a thread holding the GIL, a garbage
collection). While it runs, garbage collections are timed too, and every stall of at least
STALL_MS is listed with what overlapped it (a collection, a ledger batch), so a tail in the
latency figures can be traced to its cause.

Each worker process writes its figures to ``<RANA_LOOP_LAG_DIR>/loop-lag-<pid>.json``
every DUMP_EVERY_S and when the server stops (the ASGI lifespan shutdown); the figures are
cumulative, so a reader takes differences between two reads. bench/gateway_overhead.py
sets the variable and reads the files. Nothing is exposed over HTTP.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import json
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

from providers.services import ActivityWindow as Window
from providers.services import ledger_batch, ledger_lag

INTERVAL_S = 0.001
DUMP_EVERY_S = 0.25
STALL_MS = 2.0
MAX_STALLS = 5000
# Upper bucket edges in ms; the last bucket holds everything beyond.
EDGES_MS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0, 1000.0)


class Histogram:
    """Counts per bucket (EDGES_MS), plus count, sum and max."""

    __slots__ = ("count", "counts", "max_ms", "total_ms")

    def __init__(self) -> None:
        self.counts = [0] * (len(EDGES_MS) + 1)
        self.count = 0
        self.total_ms = 0.0
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        self.counts[bisect.bisect_left(EDGES_MS, ms)] += 1
        self.count += 1
        self.total_ms += ms
        if ms > self.max_ms:
            self.max_ms = ms

    def as_dict(self) -> dict[str, Any]:
        return {
            "edges_ms": list(EDGES_MS),
            "counts": list(self.counts),
            "count": self.count,
            "total_ms": round(self.total_ms, 3),
            "max_ms": round(self.max_ms, 3),
        }


class _SchedStat:
    """Nanoseconds the calling thread has run and waited to run (Linux schedstat; else 0)."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self._fd = None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def read(self) -> tuple[int, int]:
        if self._fd is None:
            return 0, 0
        try:
            running, waiting, _slices = os.pread(self._fd, 96, 0).split()
            return int(running), int(waiting)
        except (OSError, ValueError):
            return 0, 0


class LoopLagProbe:
    def __init__(self, directory: Path, *, interval_s: float = INTERVAL_S) -> None:
        self.path = directory / f"loop-lag-{os.getpid()}.json"
        self.interval_s = interval_s
        self.lag = Histogram()
        self.gc_pauses = {generation: Histogram() for generation in range(3)}
        self.stalls: deque[dict[str, Any]] = deque(maxlen=MAX_STALLS)
        self._gc = Window()
        self._gc_generation = 0
        self._task: asyncio.Task | None = None
        self.started_at = time.time()

    # --- garbage collector timing -----------------------------------------------------------

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_generation = info["generation"]
            self._gc.begin()
        else:
            self.gc_pauses[self._gc_generation].add(self._gc.finish() * 1000)

    # --- the probe ------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            gc.callbacks.append(self._on_gc)
            self._task = asyncio.get_running_loop().create_task(self._run(), name="rana-loop-lag")

    async def _run(self) -> None:
        interval = self.interval_s
        next_dump = time.perf_counter() + DUMP_EVERY_S
        sched = _SchedStat()  # this (the loop's) thread: time on a CPU, time waiting for one
        try:
            await self._probe(interval, next_dump, sched)
        finally:
            sched.close()

    async def _probe(self, interval: float, next_dump: float, sched: _SchedStat) -> None:
        while True:
            t0 = time.perf_counter()
            cpu0, runq0 = sched.read()
            await asyncio.sleep(interval)
            t1 = time.perf_counter()
            ms = max(0.0, (t1 - t0 - interval) * 1000)
            self.lag.add(ms)
            if ms >= STALL_MS:
                cpu1, runq1 = sched.read()
                cpu_ms, runq_ms = (cpu1 - cpu0) / 1e6, (runq1 - runq0) / 1e6
                gc_overlap = self._gc.overlaps(t0, t1)
                self.stalls.append(
                    {
                        "at": round(time.time(), 4),
                        "lag_ms": round(ms, 3),
                        # Where the loop's thread spent the late wake-up: running (its own
                        # callbacks), waiting for a CPU (the machine is busy), or neither:
                        # blocked, i.e. waiting for the GIL another thread holds.
                        "running_ms": round(cpu_ms, 3),
                        "runqueue_ms": round(runq_ms, 3),
                        "blocked_ms": round(max(0.0, (t1 - t0 - interval) * 1000 - cpu_ms - runq_ms), 3),
                        "gc": gc_overlap,
                        "gc_generation": self._gc_generation if gc_overlap else None,
                        "ledger_batch": ledger_batch.overlaps(t0, t1),
                    }
                )
            if t1 >= next_dump:
                next_dump = t1 + DUMP_EVERY_S
                self.dump()

    def figures(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "started_at": self.started_at,
            "written_at": time.time(),
            "interval_ms": self.interval_s * 1000,
            "stall_ms": STALL_MS,
            "lag": self.lag.as_dict(),
            "gc_pauses": {str(g): h.as_dict() for g, h in self.gc_pauses.items()},
            "ledger_batches": ledger_batch.runs,
            "ledger_lag": ledger_lag.as_dict(),
            "stalls": list(self.stalls),
        }

    def dump(self) -> None:
        """Write the figures (atomically: a reader never sees half a file)."""
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.figures()))
            tmp.replace(self.path)
        except OSError:
            pass

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            if self._on_gc in gc.callbacks:
                gc.callbacks.remove(self._on_gc)
        self.dump()


_probe: LoopLagProbe | None = None


def loop_lag_start() -> LoopLagProbe | None:
    """Start the probe on the running loop when RANA_LOOP_LAG_DIR is set (once per process)."""
    global _probe
    from django.conf import settings

    directory = getattr(settings, "RANA_LOOP_LAG_DIR", "")
    if not directory:
        return None
    if _probe is None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        _probe = LoopLagProbe(path)
    _probe.start()
    return _probe


async def loop_lag_stop() -> None:
    global _probe
    if _probe is not None:
        probe, _probe = _probe, None
        await probe.stop()
