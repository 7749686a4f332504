"""Cutting a time range into pieces that rollups can answer exactly.

A piece is (kind, start, end) with kind "d" (whole UTC days: day rollups), "h" (whole UTC
hours: hour rollups) or "raw" (the ledger itself, for the minutes a rollup bucket cannot
split). Pieces never overlap and cover exactly the intervals asked for.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Piece:
    kind: str  # "d" | "h" | "raw"
    start: dt.datetime
    end: dt.datetime


def floor_hour(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: dt.datetime) -> dt.datetime:
    floor = floor_hour(moment)
    return floor if floor == moment else floor + HOUR


def floor_day(moment: dt.datetime) -> dt.datetime:
    return floor_hour(moment).replace(hour=0)


def ceil_day(moment: dt.datetime) -> dt.datetime:
    floor = floor_day(moment)
    return floor if floor == moment else floor + DAY


def _cover_one(start: dt.datetime, end: dt.datetime) -> list[Piece]:
    first_hour, last_hour = ceil_hour(start), floor_hour(end)
    if first_hour >= last_hour:
        return [Piece("raw", start, end)] if start < end else []
    pieces = [Piece("raw", start, first_hour)] if start < first_hour else []
    first_day, last_day = ceil_day(first_hour), floor_day(last_hour)
    if first_day < last_day:
        if first_hour < first_day:
            pieces.append(Piece("h", first_hour, first_day))
        pieces.append(Piece("d", first_day, last_day))
        if last_day < last_hour:
            pieces.append(Piece("h", last_day, last_hour))
    else:
        pieces.append(Piece("h", first_hour, last_hour))
    if last_hour < end:
        pieces.append(Piece("raw", last_hour, end))
    return pieces


def cover(edges: Sequence[dt.datetime]) -> list[Piece]:
    """Pieces covering [edges[0], edges[-1]) that never straddle an edge, merged where they touch."""
    merged: list[Piece] = []
    for start, end in pairwise(edges):
        for piece in _cover_one(start, end):
            last = merged[-1] if merged else None
            if last and last.kind == piece.kind and last.end == piece.start:
                merged[-1] = Piece(piece.kind, last.start, piece.end)
            else:
                merged.append(piece)
    return merged
