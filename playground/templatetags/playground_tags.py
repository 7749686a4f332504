"""Formatting for the attempt timeline: money, milliseconds, outcome classes."""

from __future__ import annotations

from decimal import Decimal

from django import template

from providers.services import redact

register = template.Library()

FAILURE_TONES = {
    "success": "ok",
    "cache_hit": "ok",
    "circuit_open": "skip",
    "capability_skipped": "skip",
    "cancelled": "skip",
    "budget_blocked": "warn",
    "rate_limited": "warn",
    "quota_exhausted": "warn",
    "running": "skip",
}


@register.filter
def usd(value: Decimal | None, unpriced: bool = False) -> str:
    """Dollars with enough decimals to see a fraction of a cent; "unpriced", never a false $0."""
    if unpriced:
        return "unpriced"
    if value is None:
        return "—"
    value = Decimal(value)
    if value == 0:
        return "$0"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    places = 6 if abs(value) >= Decimal("0.0001") else 10
    return "$" + f"{value:.{places}f}".rstrip("0")


@register.filter
def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


@register.filter
def tone(outcome: str) -> str:
    """The colour family of an outcome: ok, warn, skip or bad."""
    return FAILURE_TONES.get(outcome or "", "bad")


@register.filter
def step_label(position: int | None) -> str:
    return "—" if position is None else f"step {position + 1}"


@register.filter
def masked(text: str) -> str:
    """Error text with anything shaped like a key masked (adapters mask theirs already)."""
    return redact(text or "")
