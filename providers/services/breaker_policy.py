"""The circuit breaker's rules as numbers: the global settings, a chain's overrides, and what
each attempt's outcome means to a circuit.

A circuit (one provider + model) opens after `threshold` consecutive transient failures, or
when at least `min_calls` calls in the last `window_s` seconds failed at `failure_rate` or
more; it stays open `cooldown_s`, doubled on each failed half-open probe up to
`cooldown_cap_s`, back to `cooldown_s` after a success. A chain's overrides apply to the
decisions its own requests make; circuits stay shared by every chain that uses the step.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from providers.engine.results import NO_CALL_OUTCOMES, SUCCESS, AttemptRecord
from providers.engine.types import FailureClass

TRANSIENT = frozenset(map(FailureClass, ("server_error", "timeout", "connection_error", "bad_response")))
LONG_COOLDOWN = frozenset({FailureClass.AUTH_ERROR, FailureClass.QUOTA_EXHAUSTED})
MAX_RETRY_AFTER_COOLDOWN_S = 300.0
MAX_WINDOW_S = 600.0  # the longest failure-rate window (how long Redis keeps a circuit's tallies)
WINDOW_BUCKET_S = 2.0  # the window slides in steps of this
PROBE_GRACE_S = 5.0  # a probe's lease outlives its request's deadline by this (a backstop)

# What an attempt tells its circuit (verdict()).
GOOD, BAD, RATE_LIMITED, LONG = "success", "transient", "rate_limited", "long"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    enabled: bool = True  # this chain's requests skip open circuits
    counts: bool = True  # this chain's outcomes count (False only with the breaker off globally)
    threshold: int = 5
    failure_rate: float = 0.5  # of the calls in the window
    window_s: float = 60.0
    min_calls: int = 20
    cooldown_s: float = 30.0
    cooldown_cap_s: float = 300.0
    long_cooldown_s: float = 300.0  # auth_error, quota_exhausted
    probe_lease_s: float = 60.0 + PROBE_GRACE_S  # the chain's deadline plus a grace

    def cooldown(self, reopens: int) -> float:
        """The cooldown after `reopens` failed probes in a row."""
        return min(self.cooldown_s * 2 ** min(reopens, 32), max(self.cooldown_cap_s, self.cooldown_s))

    @property
    def window_buckets(self) -> int:
        return max(1, round(min(self.window_s, MAX_WINDOW_S) / WINDOW_BUCKET_S))


DEFAULT_POLICY = BreakerPolicy()


def breaker_policy(chain=None, *, deadline_s: float | None = None) -> BreakerPolicy:
    """The global settings (RANA_BREAKER_*), with a FallbackChain's overrides when given."""

    def pick(field: str, setting: str):
        value = getattr(chain, field, None) if chain is not None else None
        return getattr(settings, setting) if value is None else value

    enabled = settings.RANA_BREAKER_ENABLED and (chain is None or chain.breaker_enabled)
    deadline = deadline_s if deadline_s is not None else getattr(chain, "deadline_s", 60.0)
    return BreakerPolicy(
        enabled=bool(enabled),
        counts=bool(settings.RANA_BREAKER_ENABLED),
        threshold=int(pick("breaker_threshold", "RANA_BREAKER_THRESHOLD")),
        failure_rate=float(pick("breaker_failure_rate_pct", "RANA_BREAKER_FAILURE_RATE_PCT")) / 100,
        window_s=float(pick("breaker_window_s", "RANA_BREAKER_WINDOW_S")),
        min_calls=int(pick("breaker_min_calls", "RANA_BREAKER_MIN_CALLS")),
        cooldown_s=float(pick("breaker_cooldown_s", "RANA_BREAKER_COOLDOWN_S")),
        cooldown_cap_s=float(pick("breaker_cooldown_cap_s", "RANA_BREAKER_COOLDOWN_CAP_S")),
        long_cooldown_s=float(settings.RANA_BREAKER_LONG_COOLDOWN_S),
        probe_lease_s=float(deadline) + PROBE_GRACE_S,
    )


def verdict(attempt: AttemptRecord) -> str | None:
    """What an attempt says of its provider + model: GOOD, BAD, RATE_LIMITED, LONG, or None
    (the caller's own error, a cancellation, an injected fault: nothing; a probe that ended so
    gives its slot back). Skips (circuit_open, capability_skipped) never reach here."""
    outcome = attempt.outcome
    if attempt.injected:
        return None
    if outcome == SUCCESS:
        return GOOD
    if outcome in TRANSIENT:
        return BAD
    if outcome == FailureClass.RATE_LIMITED:
        return RATE_LIMITED
    if outcome in LONG_COOLDOWN:
        return LONG
    return None


def is_skip(attempt: AttemptRecord) -> bool:
    return attempt.outcome in NO_CALL_OUTCOMES


def retry_after_cooldown(attempt: AttemptRecord) -> float:
    return min(attempt.retry_after_s or 0.0, MAX_RETRY_AFTER_COOLDOWN_S)
