"""python manage.py rana_config export [--output FILE] | import FILE"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from providers.services.config_io import ConfigImportError, config_export, config_import


class Command(BaseCommand):
    help = "Configuration as code: export providers, prices and chains to YAML, or import them."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        export = actions.add_parser("export", help="Write the configuration as YAML (never the keys).")
        export.add_argument("--output", "-o", type=Path, help="File to write (default: standard output).")
        load = actions.add_parser("import", help="Apply a YAML file: all of it or, on any error, none.")
        load.add_argument("file", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "export":
            self._export(options.get("output"))
        else:
            self._import(options["file"])

    def _export(self, output: Path | None) -> None:
        text = config_export()
        if output is None:
            self.stdout.write(text, ending="")
            return
        output.write_text(text, encoding="utf-8")
        self.stderr.write(f"Wrote {output}.")

    def _import(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"{path}: cannot read it ({exc.strerror})") from exc
        try:
            report = config_import(text=text, filename=str(path))
        except ConfigImportError as exc:
            raise CommandError(f"Nothing was changed.\n{exc}") from exc
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"Warning: {warning}"))
        verdict = "Imported" if report.changed else "Nothing to change"
        self.stdout.write(self.style.SUCCESS(f"{verdict}. {report}"))
