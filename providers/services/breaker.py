"""Circuit breaker per provider + model: skip what is known to be failing, then probe it.

Closed: calls go through; consecutive failures of the counted classes are tallied.
Open: the step is skipped (recorded as circuit_open, no network call) until the cooldown
ends. Half-open: one probe call is let through; success closes, failure re-opens.

- RANA_BREAKER_THRESHOLD consecutive server_error / timeout / connection_error /
  bad_response failures open it for RANA_BREAKER_COOLDOWN_S.
- rate_limited opens it at once for the Retry-After the provider asked for (if any).
- auth_error and quota_exhausted open it at once for a long cooldown: the key or the
  billing needs a human, retrying every request would only add latency.
- The caller's own errors (invalid_request, context_length, content_filter), cancelled
  calls and injected faults never count (a half-open probe ending so gives its slot back).

State is per process (each worker learns on its own, in a few requests).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.conf import settings

from providers.engine.plan import StepPlan
from providers.engine.results import SUCCESS, AttemptRecord
from providers.engine.types import FailureClass

TRANSIENT = {
    FailureClass.SERVER_ERROR,
    FailureClass.TIMEOUT,
    FailureClass.CONNECTION_ERROR,
    FailureClass.BAD_RESPONSE,
}
LONG_COOLDOWN = {FailureClass.AUTH_ERROR, FailureClass.QUOTA_EXHAUSTED}
MAX_RETRY_AFTER_COOLDOWN_S = 300.0

Key = tuple[int | None, str]


@dataclass(slots=True)
class _Circuit:
    failures: int = 0
    open_until: float = 0.0
    probing: bool = False
    last_class: str = ""


class CircuitBreaker:
    def __init__(
        self, *, threshold: int, cooldown_s: float, long_cooldown_s: float, clock=time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.long_cooldown_s = long_cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._circuits: dict[Key, _Circuit] = {}

    def is_open(self, step: StepPlan) -> bool:
        """True: skip this step now. After the cooldown one caller gets through as the probe."""
        circuit = self._circuits.get((step.provider.id, step.model))
        if circuit is None or not circuit.open_until:
            return False
        with self._lock:
            if self._clock() < circuit.open_until or circuit.probing:
                return True
            circuit.probing = True
            return False

    def retry_in(self, step: StepPlan) -> tuple[str, float] | None:
        """Why this step is skipped and the seconds until it may be tried again (0 while another
        caller's probe is in flight); None when its circuit is closed or a probe may go now.
        "rate_limited" when a Retry-After cooldown opened it, "circuit_open" otherwise."""
        circuit = self._circuits.get((step.provider.id, step.model))
        if circuit is None or not circuit.open_until:
            return None
        with self._lock:
            remaining = circuit.open_until - self._clock()
            if remaining <= 0 and not circuit.probing:
                return None
            reason = "rate_limited" if circuit.last_class == FailureClass.RATE_LIMITED else "circuit_open"
            return reason, max(0.0, remaining)

    def record(self, attempt: AttemptRecord) -> None:
        if attempt.outcome in (FailureClass.CIRCUIT_OPEN, FailureClass.CAPABILITY_SKIPPED):
            return
        key = (attempt.provider_id, attempt.model)
        if attempt.injected or attempt.outcome == FailureClass.CANCELLED:
            # Never counted; but a half-open probe that ended this way gives its slot back,
            # or the circuit would stay open for good.
            circuit = self._circuits.get(key)
            if circuit is not None and circuit.probing:
                with self._lock:
                    circuit.probing = False
            return
        with self._lock:
            circuit = self._circuits.setdefault(key, _Circuit())
            circuit.probing = False
            if attempt.outcome == SUCCESS:
                circuit.failures, circuit.open_until, circuit.last_class = 0, 0.0, ""
                return
            cooldown = self._cooldown(circuit, attempt)
            if cooldown:
                circuit.open_until = self._clock() + cooldown
                circuit.last_class = attempt.outcome

    def _cooldown(self, circuit: _Circuit, attempt: AttemptRecord) -> float:
        outcome = attempt.outcome
        if outcome in LONG_COOLDOWN:
            return self.long_cooldown_s
        if outcome == FailureClass.RATE_LIMITED:
            return min(attempt.retry_after_s or 0.0, MAX_RETRY_AFTER_COOLDOWN_S)
        if outcome in TRANSIENT:
            circuit.failures += 1
            if circuit.failures >= self.threshold or circuit.open_until:  # a failed probe re-opens
                return self.cooldown_s
        return 0.0

    def states(self) -> list[dict]:
        """Every circuit that has seen a failure: for the dashboards' status table."""
        now = self._clock()
        rows = []
        with self._lock:
            for (provider_id, model), c in self._circuits.items():
                if not (c.failures or c.open_until):
                    continue
                remaining = max(0.0, c.open_until - now)
                state = "open" if remaining else ("half_open" if c.open_until else "closed")
                rows.append(
                    {
                        "provider_id": provider_id,
                        "model": model,
                        "state": state,
                        "cooldown_remaining_s": round(remaining, 1),
                        "consecutive_failures": c.failures,
                        "last_failure_class": c.last_class,
                    }
                )
        return rows

    def reset(self) -> None:
        with self._lock:
            self._circuits.clear()


_breaker: CircuitBreaker | None = None


def get_breaker() -> CircuitBreaker:
    global _breaker
    if _breaker is None:
        _breaker = CircuitBreaker(
            threshold=settings.RANA_BREAKER_THRESHOLD,
            cooldown_s=settings.RANA_BREAKER_COOLDOWN_S,
            long_cooldown_s=settings.RANA_BREAKER_LONG_COOLDOWN_S,
        )
    return _breaker
