"""Delete ledger rows older than RANA_RETENTION_DAYS (or --days) and request bodies older than
RANA_BODY_RETENTION_DAYS (or --body-days), as the daily task does."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from providers.services.retention import ledger_prune


class Command(BaseCommand):
    help = (
        "Delete completions older than --days (default RANA_RETENTION_DAYS; 0 keeps everything) "
        "with their attempts, in batches, and request bodies older than --body-days (default "
        "RANA_BODY_RETENTION_DAYS); the dashboards' rollups are kept. --dry-run only counts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None)
        parser.add_argument("--body-days", type=int, default=None)
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted.")

    def handle(self, *args: Any, **options: Any) -> None:
        days = settings.RANA_RETENTION_DAYS if options["days"] is None else options["days"]
        body_days = options["body_days"]
        body_days = settings.RANA_BODY_RETENTION_DAYS if body_days is None else body_days
        if days < 0 or body_days < 0:
            raise CommandError("--days and --body-days must be 0 (keep everything) or a number of days.")
        report = ledger_prune(days=days, body_days=body_days, dry_run=options["dry_run"])
        self.stdout.write(self.style.SUCCESS(str(report)))
