"""python manage.py rana_load_capabilities [--file FILE]: upsert the capability table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from providers.services.capabilities import CAPABILITY_TABLE_PATH, CapabilityTableError, capabilities_load


class Command(BaseCommand):
    help = "Load what each model can do into ModelCapability; safe to run again (operator rows are kept)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--file",
            type=Path,
            default=None,
            help=f"A capability table (default: {CAPABILITY_TABLE_PATH.name}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = capabilities_load(path=options["file"])
        except (CapabilityTableError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Capabilities: {report}."))
