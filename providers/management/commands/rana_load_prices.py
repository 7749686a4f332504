"""python manage.py rana_load_prices [--file FILE]: upsert the price table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from providers.services.prices import PRICE_TABLE_PATH, PriceTableError, prices_load


class Command(BaseCommand):
    help = "Load model prices (USD per million tokens) into ModelPrice; safe to run again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--file", type=Path, default=None, help=f"A price table (default: {PRICE_TABLE_PATH.name})."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = prices_load(path=options["file"])
        except (PriceTableError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Prices: {report}."))
