"""Time slots of a series on the viewer's clock, and a cheap exact plan to sum each slot.

Slots are local minutes, hours or days. Hour and day slots start on a whole UTC hour: in the
few zones whose offset is not a whole hour (India +5:30, Nepal +5:45, Newfoundland -3:30, ...)
a slot starts at the UTC hour just before the local boundary and is labelled with its local
start time, so it can always be read from hour rollups. Range totals are never affected.

A day slot that does not start at UTC midnight would need most of two days of hour rows.
plan() instead writes such a slot as whole days plus and minus the short partial days at
its edges: a local day in Paris (UTC+1) is the UTC day, plus 23:00-24:00 of the day before,
minus 23:00-24:00 of the day itself. Same figures, an eighth of the rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from itertools import pairwise

from django.utils import timezone

from dashboards.rollups.timegrid import DAY, UTC, ceil_day, cover, floor_day, floor_hour
from dashboards.selectors.filters import Filters

MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class SignedPiece:
    kind: str  # "d" | "h" | "raw" (see timegrid.Piece)
    start: dt.datetime
    end: dt.datetime
    slot: int
    sign: int  # +1 or -1


def _local_boundaries(f: Filters) -> list[dt.datetime]:
    grain, local_start = f.series_grain, timezone.localtime(f.start, f.tz)
    out = []
    if grain == "day":
        day = local_start.date() + dt.timedelta(days=1)
        while (edge := dt.datetime.combine(day, dt.time(0), tzinfo=f.tz).astimezone(UTC)) < f.end:
            out.append(edge)
            day += dt.timedelta(days=1)
        return out
    step = MINUTE if grain == "minute" else HOUR
    floor = local_start.replace(second=0, microsecond=0)
    floor = floor.replace(minute=0) if grain == "hour" else floor
    edge = floor.astimezone(UTC) + step
    while edge < f.end:
        out.append(edge)
        edge += step
    return out


def series_edges(f: Filters) -> list[dt.datetime]:
    """Slot boundaries (UTC): the range start, each local minute/hour/day boundary, the end."""
    inner = _local_boundaries(f)
    if f.series_grain != "minute":
        inner = sorted({floor_hour(edge) for edge in inner if f.start < floor_hour(edge)})
    return [f.start, *inner, f.end]


def slot_labels(f: Filters, edges: list[dt.datetime]) -> list[str]:
    fmt = {"minute": "%H:%M", "hour": "%a %d %b %H:%M", "day": "%a %d %b"}[f.series_grain]
    if f.series_grain == "hour" and f.span <= dt.timedelta(hours=26):
        fmt = "%H:%M"
    return [timezone.localtime(edge, f.tz).strftime(fmt) for edge in edges[:-1]]


def slot_keys(f: Filters, edges: list[dt.datetime]) -> list[str]:
    """Machine-readable slot starts (ISO 8601 with the viewer's offset), for CSV downloads."""
    return [timezone.localtime(edge, f.tz).replace(microsecond=0).isoformat() for edge in edges[:-1]]


def _signed_parts(start: dt.datetime, end: dt.datetime, inner_start: bool, inner_end: bool) -> list:
    """[start, end) as (from, to, sign) parts; partial days at inner edges taken the cheap way."""
    if end - start < DAY:
        return [(start, end, 1)]
    first, last = ceil_day(start), floor_day(end)
    parts = []
    if start < first:
        day = floor_day(start)
        if inner_start and start - day < first - start:
            parts += [(day, first, 1), (day, start, -1)]
        else:
            parts.append((start, first, 1))
    if first < last:
        parts.append((first, last, 1))
    if last < end:
        day_end = ceil_day(end)
        if inner_end and day_end - end < end - last:
            parts += [(last, day_end, 1), (end, day_end, -1)]
        else:
            parts.append((last, end, 1))
    return parts


def plan(edges: list[dt.datetime]) -> list[SignedPiece]:
    """Signed pieces whose sums give every slot [edges[i], edges[i + 1]) exactly."""
    out, last = [], len(edges) - 2
    for slot, (start, end) in enumerate(pairwise(edges)):
        for lo, hi, sign in _signed_parts(start, end, slot > 0, slot < last):
            out += [SignedPiece(p.kind, p.start, p.end, slot, sign) for p in cover([lo, hi])]
    return out
