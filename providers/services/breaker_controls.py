"""Operators' hands on the circuit breaker, and the circuits as a status page shows them.

`circuit_force` opens, closes or resets one circuit (provider + model) by hand and records
who did it and when (CircuitAction). With REDIS_URL the change reaches every process at once
(through Redis); without it, the state is per process and the change reaches only the process
that made it. `circuit_status` (exported as a read through providers.selectors) lists every
circuit an operator may act on.

- open: the circuit stays open, with no probe, until an operator closes or resets it;
- close: closed now, its counts (failures, window, cooldown doubling) start again;
- reset: forgotten, as if never seen.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Max

from providers.models import ChainStep, CircuitAction, CircuitActionKind, Provider

from .breaker import get_breaker
from .breaker_local import Key, circuit_row

__all__ = ["circuit_force", "circuit_status"]


def circuit_force(*, provider_id: int, model: str, action: str, user=None) -> CircuitAction:
    """Open, close or reset a circuit by hand, for every process, and record it. Raises
    ValueError (unknown action or provider) or BreakerUnavailable (Redis is unreachable: nothing
    was changed or recorded)."""
    if action not in CircuitActionKind.values:
        raise ValueError(f"unknown circuit action {action!r} (one of {', '.join(CircuitActionKind.values)})")
    provider = Provider.objects.filter(pk=provider_id).first()
    if provider is None:
        raise ValueError(f"no provider with id {provider_id}")
    get_breaker().force(provider_id, model, action)
    known = user is not None and user.is_authenticated
    return CircuitAction.objects.create(
        provider=provider,
        model=model,
        action=action,
        user=user if known else None,
        username=user.get_username() if known else "",
    )


def _last_actions(keys: set[Key]) -> dict[Key, CircuitAction]:
    latest = (
        CircuitAction.objects.filter(provider_id__in={k[0] for k in keys})
        .values("provider_id", "model")
        .annotate(last=Max("id"))
        .values_list("last", flat=True)
    )
    return {(a.provider_id, a.model): a for a in CircuitAction.objects.filter(pk__in=list(latest))}


def _when(epoch: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(epoch, dt.UTC) if epoch else None


def circuit_status() -> list[dict]:
    """Every circuit of an enabled chain step, and any other the breaker knows, by provider name
    and model: the breaker's row (state, reason, cooldown_remaining_s, consecutive_failures,
    failure_rate and window_calls over RANA_BREAKER_WINDOW_S, ...) with `provider_name`,
    `changed_at` (a datetime, or None) and `last_action` (the latest CircuitAction, or None)."""
    states = {(row["provider_id"], row["model"]): row for row in get_breaker().states()}
    used = ChainStep.objects.filter(enabled=True, provider__enabled=True).values_list("provider_id", "model")
    keys = set(states) | set(used)
    names = dict(Provider.objects.filter(pk__in={k[0] for k in keys}).values_list("pk", "name"))
    actions = _last_actions(keys)
    rows = []
    for key in sorted(keys, key=lambda k: (names.get(k[0], ""), k[1])):
        row = states.get(key) or circuit_row(
            key,
            0.0,
            open_until=0.0,
            manual=False,
            window=(0, 0),
            reason="",
            failures=0,
            last_class="",
            changed_at=0.0,
            probing=False,
            cooldown_s=0.0,
        )
        action = actions.get(key)
        rows.append(
            {
                **row,
                "provider_name": names.get(key[0], ""),
                "changed_at": _when(row["changed_at"]),
                "last_action": None
                if action is None
                else {"action": action.action, "username": action.username, "at": action.created_at},
            }
        )
    return rows
