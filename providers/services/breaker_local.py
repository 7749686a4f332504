"""Circuits in this process's memory, under one lock: the breaker without Redis, and each
process's own state while Redis is unreachable. breaker_redis.py holds the same rules in Lua.

Per circuit: consecutive transient failures, failed probes in a row (the cooldown doubles with
each), "open until" and why, whether an operator opened it, the half-open probe's lease, and
the calls and failures of the failure-rate window in WINDOW_BUCKET_S buckets.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field

from .breaker_policy import BAD, GOOD, LONG, MAX_WINDOW_S, RATE_LIMITED, WINDOW_BUCKET_S, BreakerPolicy

Key = tuple[int | None, str]  # provider id, model
PROBE_WAIT_S = 1.0  # retry_in while another request probes: its verdict is not known yet
ACTIONS = ("open", "close", "reset")


@dataclass(frozen=True, slots=True)
class Seen:
    """What a process knows of a circuit that is not closed."""

    open_until: float
    reason: str
    manual: bool = False


def retry_reason(reason: str) -> str:
    return "rate_limited" if reason == RATE_LIMITED else "circuit_open"


def circuit_row(key: Key, now: float, **state) -> dict:
    """One circuit as states() lists it (the dashboards' status table, breaker_controls)."""
    open_until, manual = state["open_until"], state["manual"]
    calls, failures = state["window"]
    name = "open" if manual or open_until > now else ("half_open" if open_until else "closed")
    return {
        "provider_id": key[0],
        "model": key[1],
        "state": name,
        "reason": state["reason"],
        "cooldown_remaining_s": None if manual else round(max(0.0, open_until - now), 1),
        "consecutive_failures": state["failures"],
        "last_failure_class": state["last_class"],
        "failure_rate": round(failures / calls, 3) if calls else None,
        "window_calls": calls,
        "changed_at": state["changed_at"] or None,
        "manual": manual,
        "probe_in_flight": state["probing"],
        "cooldown_s": state["cooldown_s"],
    }


@dataclass(slots=True)
class _Circuit:
    failures: int = 0
    reopens: int = 0
    open_until: float = 0.0
    reason: str = ""
    manual: bool = False
    last_class: str = ""
    changed_at: float = 0.0
    cooldown_s: float = 0.0
    probe: str | None = None
    probe_until: float = 0.0
    window: dict[int, list[int]] = field(default_factory=dict)  # bucket -> [calls, failures]

    def tally(self, now: float, failed: bool) -> None:
        bucket = math.floor(now / WINDOW_BUCKET_S)
        if bucket not in self.window:  # a new bucket: drop those past the longest window
            oldest = bucket - MAX_WINDOW_S / WINDOW_BUCKET_S
            self.window = {b: c for b, c in self.window.items() if b > oldest}
        counts = self.window.setdefault(bucket, [0, 0])
        counts[0] += 1
        counts[1] += failed

    def window_counts(self, now: float, buckets: int) -> tuple[int, int]:
        newest = math.floor(now / WINDOW_BUCKET_S)
        seen = [c for b, c in self.window.items() if newest - buckets < b <= newest]
        return sum(c[0] for c in seen), sum(c[1] for c in seen)

    def shut(self, until: float, reason: str, now: float, *, clear_window: bool) -> None:
        self.open_until, self.reason, self.changed_at = until, reason, now
        self.cooldown_s = until - now
        if clear_window:
            self.window = {}


class LocalCircuits:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._circuits: dict[Key, _Circuit] = {}

    def admit(self, key: Key, lease_s: float, now: float) -> tuple[bool, str | None]:
        """(go, probe token): go when closed, or as the one half-open probe (with its token)."""
        circuit = self._circuits.get(key)
        if circuit is None or not (circuit.open_until or circuit.manual):
            return True, None
        with self._lock:
            if circuit.manual or now < circuit.open_until:
                return False, None
            if not circuit.open_until:
                return True, None
            if circuit.probe is not None and now < circuit.probe_until:
                return False, None
            circuit.probe, circuit.probe_until = os.urandom(8).hex(), now + lease_s
            return True, circuit.probe

    def record(
        self,
        key: Key,
        kind: str,
        failure_class: str,
        retry_after_s: float,
        policy: BreakerPolicy,
        now: float,
        token: str | None,
    ) -> None:
        """One verdict: GOOD, BAD, RATE_LIMITED (for `retry_after_s`) or LONG."""
        with self._lock:
            circuit = self._circuits.setdefault(key, _Circuit())
            probe = token is not None and circuit.probe == token
            if probe:
                circuit.probe = None
            if kind == GOOD:
                circuit.tally(now, False)
                circuit.failures = circuit.reopens = 0
                if circuit.open_until and not circuit.manual:
                    circuit.open_until, circuit.reason, circuit.changed_at = 0.0, "", now
                return
            circuit.last_class = failure_class
            if kind == BAD:
                circuit.tally(now, True)
                circuit.failures += 1
                if circuit.manual:
                    return
                if probe:
                    circuit.reopens += 1
                elif circuit.open_until or not self._trips(circuit, policy, now):
                    return
                circuit.shut(now + policy.cooldown(circuit.reopens), failure_class, now, clear_window=True)
                return
            until = now + (policy.long_cooldown_s if kind == LONG else retry_after_s)
            if not circuit.manual and until > max(now, circuit.open_until):  # never shortened
                circuit.shut(until, failure_class if kind == LONG else RATE_LIMITED, now, clear_window=False)

    @staticmethod
    def _trips(circuit: _Circuit, policy: BreakerPolicy, now: float) -> bool:
        if circuit.failures >= policy.threshold:
            return True
        calls, failures = circuit.window_counts(now, policy.window_buckets)
        return calls >= policy.min_calls and failures >= policy.failure_rate * calls

    def release(self, key: Key, token: str) -> None:
        """A probe that ended without a verdict gives its slot back."""
        circuit = self._circuits.get(key)
        if circuit is not None and circuit.probe == token:
            with self._lock:
                circuit.probe = None

    def retry_in(self, key: Key, policy: BreakerPolicy, now: float) -> tuple[str, float] | None:
        circuit = self._circuits.get(key)
        if circuit is None or not (circuit.open_until or circuit.manual):
            return None
        if circuit.manual:
            return "circuit_open", policy.cooldown_s
        if now < circuit.open_until:
            return retry_reason(circuit.reason), circuit.open_until - now
        if circuit.probe is not None and now < circuit.probe_until:
            return retry_reason(circuit.reason), PROBE_WAIT_S
        return None

    def force(self, key: Key, action: str, now: float) -> None:
        with self._lock:
            if action == "reset":
                self._circuits.pop(key, None)
                return
            circuit = self._circuits.setdefault(key, _Circuit())
            circuit.probe, circuit.changed_at = None, now
            if action == "open":
                circuit.manual, circuit.reason, circuit.open_until = True, "manual", now
            else:  # close: the counts start again
                self._circuits[key] = _Circuit(changed_at=now)

    def rows(self, window_s: float, now: float) -> list[dict]:
        buckets = max(1, round(min(window_s, MAX_WINDOW_S) / WINDOW_BUCKET_S))
        with self._lock:
            return [
                circuit_row(
                    key,
                    now,
                    open_until=c.open_until,
                    manual=c.manual,
                    window=c.window_counts(now, buckets),
                    reason=c.reason,
                    failures=c.failures,
                    last_class=c.last_class,
                    changed_at=c.changed_at,
                    probing=c.probe is not None and now < c.probe_until,
                    cooldown_s=round(c.cooldown_s, 1),
                )
                for key, c in self._circuits.items()
                if c.failures or c.open_until or c.manual or c.changed_at
            ]

    def seed(self, known: dict[Key, Seen], now: float) -> None:
        """Start from what was known shared (a Redis outage): open circuits stay open."""
        with self._lock:
            for key, seen in known.items():
                circuit = self._circuits.setdefault(key, _Circuit())
                circuit.open_until, circuit.reason, circuit.manual = seen.open_until, seen.reason, seen.manual
                circuit.changed_at = circuit.changed_at or now

    def flush(self) -> None:
        """Nothing waits to be sent here."""

    def clear(self) -> None:
        with self._lock:
            self._circuits.clear()
