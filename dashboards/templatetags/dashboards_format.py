"""Number formats for the dashboards: money, percentages, durations, compact counts."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django import template

register = template.Library()
DASH = "—"


@register.filter
def usd(value: Decimal | float | None) -> str:
    """$1,234.56; amounts under a dollar keep four decimals ($0.0123); None is a dash."""
    if value is None or value == "":
        return DASH
    amount = Decimal(str(value))
    places = Decimal("0.01") if abs(amount) >= 1 or amount == 0 else Decimal("0.0001")
    rounded = amount.quantize(places, rounding=ROUND_HALF_UP)
    sign = "-" if rounded < 0 else ""
    return f"{sign}${abs(rounded):,}"


@register.filter
def percent(value: float | None) -> str:
    return DASH if value is None else f"{value:.2f}%"


@register.filter
def duration_ms(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value / 1000:.2f} s" if value >= 10_000 else f"{value:,.0f} ms"


@register.filter
def seconds(value: float | None) -> str:
    if value is None:
        return DASH
    if value >= 3600:
        return f"{value / 3600:,.1f} h"
    return f"{value / 60:,.1f} min" if value >= 120 else f"{value:,.1f} s"


@register.filter
def compact(value: int | float | None) -> str:
    """1,234 / 12.3k / 4.56M."""
    if value is None:
        return DASH
    number = float(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e4, "k")):
        if abs(number) >= limit:
            return f"{number / limit:.3g}{suffix}" if suffix != "k" else f"{number / 1e3:,.1f}k"
    return f"{number:,.0f}"


@register.filter
def cell(value: object, unit: str) -> str:
    """A chart value in a table cell, formatted by the chart's unit."""
    if value is None:
        return DASH
    formats = {"usd": usd, "%": percent, "ms": duration_ms, "s": seconds}
    if unit in formats:
        return formats[unit](value)
    if unit in ("min", "h"):
        return f"{value:,.2f} {unit}"
    return f"{value:,}" if isinstance(value, int) else str(value)
