"""Circuit breaker per provider + model: skip what is known to be failing, then probe it.

Closed: calls go through; their outcomes are tallied. Open: the step is skipped (recorded as
circuit_open, no network call) until the cooldown ends. Half-open: exactly one probe call is
let through; its success closes the circuit, its failure re-opens it for twice the cooldown
(up to the cap). The rules and their numbers: breaker_policy.py.

- RANA_BREAKER_THRESHOLD consecutive server_error / timeout / connection_error /
  bad_response failures open it, and so does a failure rate of RANA_BREAKER_FAILURE_RATE_PCT
  over RANA_BREAKER_WINDOW_S once RANA_BREAKER_MIN_CALLS calls were made in it.
- rate_limited opens it at once for the Retry-After the provider asked for (if any); a later,
  shorter one never shortens it.
- auth_error and quota_exhausted open it at once for the long cooldown: the key or the
  billing needs a human, retrying every request would only add latency.
- The caller's own errors (invalid_request, context_length, content_filter), cancelled
  calls and injected faults never count; a half-open probe ending so gives its slot back.
- Operators open, close or reset a circuit by hand (breaker_controls.py); one opened by hand
  stays open until closed or reset by hand.

Where the state lives: with REDIS_URL (the default cache on django-redis), in Redis, shared
by every process (breaker_shared.py, breaker_redis.py); else in this process
(breaker_local.py), as it also is while Redis is unreachable.

Each request holds its probe slots in its own CircuitGate (engine_deps makes one per request):
a probe is that request's, and whichever way it ends (a verdict, no verdict, the engine's
release_probe when the step gave no answer) the slot is given back; its lease also expires
on its own, the chain's deadline plus PROBE_GRACE_S after it was taken.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from django.core.cache import caches

from providers.engine.plan import StepPlan
from providers.engine.results import AttemptRecord

from .breaker_local import ACTIONS, Key, LocalCircuits
from .breaker_policy import BreakerPolicy, breaker_policy, is_skip, retry_after_cooldown, verdict
from .breaker_shared import BreakerUnavailable, SharedCircuits

__all__ = ["BreakerUnavailable", "CircuitBreaker", "CircuitGate", "get_breaker"]

Circuits = LocalCircuits | SharedCircuits
Held = dict[Key, str]  # the probe tokens a request (or, without a gate, the breaker) holds


class CircuitBreaker:
    """The breaker's API. `policy` None: the global settings (a chain's policy can be passed to
    each call); `circuits` None: Redis when the default cache is django-redis, else this process."""

    def __init__(
        self,
        policy: BreakerPolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
        circuits: Circuits | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._fixed = circuits
        self._local = LocalCircuits()
        self._shared: SharedCircuits | None = None
        self._shared_at: tuple = ()
        self._lock = threading.Lock()
        self._held: dict[Key, str] = {}  # probes taken through is_open() without a gate

    def circuits(self) -> Circuits:
        if self._fixed is not None:
            return self._fixed
        backend = caches["default"]
        if not _is_redis(backend):
            return self._local
        where = (backend._server, backend.key_prefix)
        if self._shared is None or self._shared_at != where:
            with self._lock:
                if self._shared is None or self._shared_at != where:
                    if self._shared is not None:
                        self._shared.close()
                    server = backend._server  # LOCATION: a URL, a comma-separated list or a list
                    url = (server if isinstance(server, str) else server[0]).split(",")[0]
                    make_key = backend.client.make_key
                    self._shared = SharedCircuits(url, lambda name: str(make_key(name)), self._clock)
                    self._shared_at = where
        return self._shared

    def gate(self, policy: BreakerPolicy | None = None) -> CircuitGate:
        return CircuitGate(self, policy or self._policy())

    def is_open(
        self, step: StepPlan, policy: BreakerPolicy | None = None, *, held: Held | None = None
    ) -> bool:
        """True: skip this step now. After the cooldown one caller gets through as the probe."""
        policy = policy or self._policy()
        if not policy.enabled:
            return False
        key = (step.provider.id, step.model)
        go, token = self.circuits().admit(key, policy.probe_lease_s, self._clock())
        if token is not None:
            (self._held if held is None else held)[key] = token
        return not go

    def record(
        self, attempt: AttemptRecord, policy: BreakerPolicy | None = None, *, held: Held | None = None
    ) -> None:
        if is_skip(attempt):
            return
        policy = policy or self._policy()
        key = (attempt.provider_id, attempt.model)
        token = (self._held if held is None else held).pop(key, None)
        kind = verdict(attempt) if policy.counts else None
        if kind is None:
            if token is not None:
                self.circuits().release(key, token)
            return
        retry_after = retry_after_cooldown(attempt)
        self.circuits().record(key, kind, attempt.outcome, retry_after, policy, self._clock(), token)

    def release_probe(self, step: StepPlan, *, held: Held | None = None) -> None:
        """The step gave no answer: a probe slot taken for it and not yet given back is free."""
        key = (step.provider.id, step.model)
        token = (self._held if held is None else held).pop(key, None)
        if token is not None:
            self.circuits().release(key, token)

    def retry_in(self, step: StepPlan, policy: BreakerPolicy | None = None) -> tuple[str, float] | None:
        """None when closed or a probe may go now; else (reason, seconds until the step may be
        tried): "rate_limited" when a Retry-After holds it open, "circuit_open" otherwise."""
        policy = policy or self._policy()
        if not policy.enabled:
            return None
        return self.circuits().retry_in((step.provider.id, step.model), policy, self._clock())

    def states(self) -> list[dict]:
        """Every circuit that has seen a failure or a change: for the status tables."""
        return self.circuits().rows(self._policy().window_s, self._clock())

    def force(self, provider_id: int, model: str, action: str) -> None:
        """An operator's open, close or reset; for every process when the state is in Redis.
        Raises BreakerUnavailable when Redis is unreachable."""
        if action not in ACTIONS:
            raise ValueError(f"unknown circuit action {action!r} (one of {', '.join(ACTIONS)})")
        self._held.pop((provider_id, model), None)
        self.circuits().force((provider_id, model), action, self._clock())

    def flush(self) -> None:
        """Send the verdicts still queued for Redis (a graceful stop)."""
        self.circuits().flush()

    def reset(self) -> None:
        """Forget every circuit (for every process on Redis); the Redis thread stops until next used."""
        self._held.clear()
        self.circuits().clear()
        with self._lock:
            if self._shared is not None:
                self._shared.close()
            self._shared, self._shared_at = None, ()

    def _policy(self) -> BreakerPolicy:
        return self.policy or breaker_policy()


class CircuitGate:
    """One request's hooks into the breaker: its chain's policy and the probe slots it holds."""

    __slots__ = ("breaker", "held", "policy")

    def __init__(self, breaker: CircuitBreaker, policy: BreakerPolicy) -> None:
        self.breaker, self.policy = breaker, policy
        self.held: dict[Key, str] = {}

    def is_open(self, step: StepPlan) -> bool:
        return self.breaker.is_open(step, self.policy, held=self.held)

    def record(self, attempt: AttemptRecord) -> None:
        self.breaker.record(attempt, self.policy, held=self.held)

    def release_probe(self, step: StepPlan) -> None:
        self.breaker.release_probe(step, held=self.held)

    def retry_in(self, step: StepPlan) -> tuple[str, float] | None:
        return self.breaker.retry_in(step, self.policy)


def _is_redis(backend) -> bool:
    try:
        from django_redis.cache import RedisCache
    except ImportError:  # pragma: no cover (a requirement)
        return False
    return isinstance(backend, RedisCache)


_breaker: CircuitBreaker | None = None


def get_breaker() -> CircuitBreaker:
    global _breaker
    if _breaker is None:
        _breaker = CircuitBreaker()
    return _breaker


def _forget_after_fork() -> None:
    """A forked worker starts with its own breaker: its parent's thread did not come along."""
    global _breaker
    _breaker = None


os.register_at_fork(after_in_child=_forget_after_fork)
