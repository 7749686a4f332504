"""Rebuild the dashboard rollups from the ledger for a time range (idempotent)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from dashboards.rollups.rebuild import rollups_rebuild

_SPAN = re.compile(r"^(\d+)([hd])$")


def _since(value: str) -> dt.timedelta:
    match = _SPAN.match(value)
    if not match:
        raise CommandError("--since takes a number of hours or days, like 48h or 30d.")
    amount, unit = int(match.group(1)), match.group(2)
    return dt.timedelta(hours=amount) if unit == "h" else dt.timedelta(days=amount)


def _moment(value: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"not an ISO date or time: {value}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


class Command(BaseCommand):
    help = "Rebuild dashboard rollups from the ledger: --since 30d, or --start/--end (ISO, UTC if no zone)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", default="", help="How far back from now: 48h, 30d, ...")
        parser.add_argument("--start", default="")
        parser.add_argument("--end", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        if options["since"]:
            start, end = now - _since(options["since"]), now
        elif options["start"]:
            start = _moment(options["start"])
            end = _moment(options["end"]) if options["end"] else now
        else:
            raise CommandError("Give --since or --start.")
        if start >= end:
            raise CommandError("The start must be before the end.")
        self.stdout.write(self.style.SUCCESS(str(rollups_rebuild(start=start, end=end))))
