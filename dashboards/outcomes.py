"""The outcome vocabulary as the dashboards count it (the failure classes of docs/architecture.md, in order).

- An attempt succeeds ("success") or fails with one failure class.
- Error rates leave out attempts that never reached the provider or that the caller ended:
  circuit_open and capability_skipped (skips, no network call) and cancelled (the caller
  went away). They still
  show in the attempt counts by outcome.
- A completion is answered when its outcome is success or cache_hit.
"""

from __future__ import annotations

from providers.services import NOT_A_CALL
from providers.types import FailureClass

SUCCESS = "success"
FAILURE_CLASSES: tuple[str, ...] = tuple(c.value for c in FailureClass)
ATTEMPT_OUTCOMES: tuple[str, ...] = (SUCCESS, *FAILURE_CLASSES)
NOT_COUNTED_IN_ERROR_RATE = NOT_A_CALL  # as the health scores and the alert rules count them
ANSWERED = frozenset({"success", "cache_hit"})

OUTCOME_COLORS = {
    "success": "#1f8a4c",
    "rate_limited": "#e0a100",
    "quota_exhausted": "#b9770e",
    "server_error": "#c0392b",
    "timeout": "#8e44ad",
    "connection_error": "#d35400",
    "bad_response": "#7f8c8d",
    "auth_error": "#6d214f",
    "context_length": "#2c7fb8",
    "content_filter": "#16a085",
    "invalid_request": "#95a5a6",
    "circuit_open": "#34495e",
    "stream_interrupted": "#e84393",
    "cancelled": "#bdc3c7",
    "capability_skipped": "#5d6d7e",
}

# For series that are not outcomes (providers, models, chains, sources): a stable palette.
PALETTE = (
    "#2457c5",
    "#e0822c",
    "#2a9d8f",
    "#c0392b",
    "#8e44ad",
    "#6c8a1f",
    "#d4a017",
    "#5d6b7a",
    "#e84393",
    "#17becf",
)


def counts_as_error(outcome: str) -> bool:
    return outcome != SUCCESS and outcome not in NOT_COUNTED_IN_ERROR_RATE


def in_error_rate(outcome: str) -> bool:
    return outcome not in NOT_COUNTED_IN_ERROR_RATE


def outcome_label(outcome: str) -> str:
    return outcome.replace("_", " ")
