"""Requests refused by a spent budget: counted, not written one ledger row each.

A client hammering an exhausted budget would otherwise write a budget_blocked Completion per
refusal (over a thousand rows a second). Per (budget, chain, source, gateway key, user) this
process writes at most one row per RANA_BUDGET_REFUSAL_SAMPLE_S interval, whose `represents`
says how many refusals it stands for (the dashboards sum it):

- a refusal with no interval open is written at once (represents=1) and opens an interval;
- refusals inside the interval are counted; when it ends (a timer), the count is written as
  one row (the interval's first counted refusal, represents=count) and, as refusals went on,
  a new interval opens at once, so steady hammering writes one row per interval;
- at a graceful stop (service_shutdown, or interpreter exit) what is counted is written.

Every refused request still gets its answer (the 429 and its body); only the rows are
sampled. Counts held in memory are lost if the process is killed hard (at most one interval's
worth per budget).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from providers.models import Completion
from providers.services.recorder import PendingRow, get_recorder

log = logging.getLogger("rana.budget")

RefusalKey = tuple[Any, ...]  # (budget name, chain id, source, key prefix, user id)


@dataclass(slots=True)
class _Interval:
    ends_at: float  # time.monotonic()
    count: int = 0  # refusals counted since the interval opened (none written yet)
    first: dict[str, Any] | None = None  # the first counted refusal's row values
    timer: threading.Timer | None = field(default=None, repr=False)


class RefusalSampler:
    def __init__(self, interval_s: Callable[[], float]) -> None:
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._open: dict[RefusalKey, _Interval] = {}
        self._atexit = False

    def refused(self, key: RefusalKey, values: dict[str, Any]) -> dict[str, Any] | None:
        """A refusal with its Completion row values: the values to write now (with
        `represents`), or None when it is counted into a later row."""
        now = time.monotonic()
        with self._lock:
            interval = self._open.get(key)
            if interval is None or now >= interval.ends_at:
                left = 0 if interval is None else interval.count  # its timer has not run yet
                if interval is not None and interval.timer is not None:
                    interval.timer.cancel()
                self._open[key] = _Interval(ends_at=now + self._interval_s())
                return {**values, "represents": 1 + left}
            interval.count += 1
            if interval.first is None:
                interval.first = values
                interval.timer = self._timer(key, interval.ends_at - now)
            if not self._atexit:
                self._atexit = True
                atexit.register(self.flush)  # after the recorder's own: runs before it
            return None

    def _timer(self, key: RefusalKey, delay_s: float) -> threading.Timer:
        timer = threading.Timer(max(0.0, delay_s), self._due, args=(key,))
        timer.daemon = True
        timer.start()
        return timer

    def _due(self, key: RefusalKey) -> None:
        """An interval with counted refusals ended: write them, and keep counting (a new
        interval) since refusals were still coming."""
        now = time.monotonic()
        with self._lock:
            interval = self._open.get(key)
            if interval is None or not interval.count or interval.timer is not threading.current_thread():
                return
            row = {**interval.first, "represents": interval.count}
            self._open[key] = _Interval(ends_at=now + self._interval_s())
        _write(row)

    def flush(self) -> int:
        """Write every counted refusal now (a graceful stop); the rows written."""
        with self._lock:
            rows = []
            for interval in self._open.values():
                if interval.timer is not None:
                    interval.timer.cancel()
                if interval.count:
                    rows.append({**interval.first, "represents": interval.count})
            self._open.clear()
        for row in rows:
            _write(row)
        return len(rows)

    def pending(self) -> int:
        """Refusals counted and not written yet."""
        with self._lock:
            return sum(interval.count for interval in self._open.values())

    def reset(self) -> None:
        """Forget everything counted (tests)."""
        with self._lock:
            for interval in self._open.values():
                if interval.timer is not None:
                    interval.timer.cancel()
            self._open.clear()


def _write(values: dict[str, Any]) -> None:
    try:
        get_recorder().submit(PendingRow(Completion, values))
    except Exception:
        log.exception("could not record %s budget refusals", values.get("represents"))


refusals = RefusalSampler(lambda: float(settings.RANA_BUDGET_REFUSAL_SAMPLE_S))


def refusals_flush() -> int:
    return refusals.flush()


def _after_fork() -> None:
    """A forked worker starts with nothing counted (its parent's timers did not follow it)."""
    refusals._lock = threading.Lock()
    refusals._open = {}


os.register_at_fork(after_in_child=_after_fork)
