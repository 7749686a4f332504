"""The dashboard filters, parsed once per request into a plain, resolved value.

Everything is kept in the query string (shareable URLs): range, start/end (custom range, in
the viewer's timezone), chain (slug), provider (name), model, source and injected=1 (include
injected faults). The viewer's timezone comes from ?tz=, else the rana_tz cookie the page's
script sets from the browser, else settings.TIME_ZONE.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.utils import timezone

from rana_site.viewer_tz import default_tz, tz_from  # noqa: F401 (read from here by the dashboards)

RANGES = {
    "1h": ("Last hour", dt.timedelta(hours=1)),
    "24h": ("Last 24 hours", dt.timedelta(hours=24)),
    "7d": ("Last 7 days", dt.timedelta(days=7)),
    "30d": ("Last 30 days", dt.timedelta(days=30)),
}
DEFAULT_RANGE = "24h"
CUSTOM = "custom"
MAX_SPAN = dt.timedelta(days=400)


@dataclass(frozen=True)
class Filters:
    start: dt.datetime  # aware, UTC
    end: dt.datetime  # aware, UTC, exclusive
    tz: zoneinfo.ZoneInfo
    range_key: str = DEFAULT_RANGE
    chain_id: int | None = None
    chain_slug: str = ""
    provider: str = ""
    model: str = ""
    source: str = ""
    include_injected: bool = False
    params: dict[str, str] = field(default_factory=dict, compare=False)  # as given, for links

    @property
    def span(self) -> dt.timedelta:
        return self.end - self.start

    @property
    def series_grain(self) -> str:
        """The time-series step: minutes up to 6 hours, hours up to 8 days, then days."""
        if self.span <= dt.timedelta(hours=6):
            return "minute"
        return "hour" if self.span <= dt.timedelta(days=8) else "day"

    @property
    def range_label(self) -> str:
        if self.range_key in RANGES:
            return RANGES[self.range_key][0]
        start, end = timezone.localtime(self.start, self.tz), timezone.localtime(self.end, self.tz)
        return f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M}"

    @property
    def query_string(self) -> str:
        return urlencode({k: v for k, v in self.params.items() if v not in ("", None)})


def parse_local(value: str, tz: zoneinfo.ZoneInfo) -> dt.datetime | None:
    """A datetime-local value ("2025-03-01T14:30") read in the viewer's timezone, as UTC."""
    try:
        naive = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    if naive.tzinfo is not None:
        return naive.astimezone(dt.UTC)
    return naive.replace(tzinfo=tz).astimezone(dt.UTC)


def resolve_range(
    range_key: str, start: str, end: str, tz: zoneinfo.ZoneInfo, now: dt.datetime
) -> tuple[str, dt.datetime, dt.datetime]:
    """(range_key, start, end); a custom range that does not parse falls back to the default."""
    if range_key == CUSTOM:
        begin, finish = parse_local(start, tz), parse_local(end, tz)
        if begin and finish and begin < finish and finish - begin <= MAX_SPAN:
            return CUSTOM, begin, finish
        range_key = DEFAULT_RANGE
    if range_key not in RANGES:
        range_key = DEFAULT_RANGE
    now = now.astimezone(dt.UTC)
    return range_key, now - RANGES[range_key][1], now
