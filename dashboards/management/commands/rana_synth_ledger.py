"""Generate a realistic synthetic ledger (completions + attempts) and build its rollups."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboards.services.synth_ledger import synth_ledger_generate


class Command(BaseCommand):
    help = (
        "Generate a synthetic ledger of about --attempts attempts over the last --days days "
        "(realistic providers, chains, failures, latencies; retries, fallbacks and costs by the real "
        "fallback engine with simulated providers on a fake clock), then build the "
        "dashboard rollups. With --catalogue synth (default) a set of example providers and chains "
        "is created when absent; with --catalogue existing the chains already configured are used."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--attempts", type=int, default=100_000)
        parser.add_argument("--days", type=float, default=30.0)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--catalogue", choices=["synth", "existing"], default="synth")
        parser.add_argument("--chain", action="append", dest="chains", help="Only this chain slug (repeat).")
        parser.add_argument("--end", help="ISO end time (default: now).")
        parser.add_argument("--no-rollups", action="store_true", help="Skip building the rollups.")
        parser.add_argument(
            "--no-breaker", action="store_true", help="No circuit breaker (no circuit_open skips)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["attempts"] <= 0 or options["days"] <= 0:
            raise CommandError("--attempts and --days must be positive.")
        end = dt.datetime.fromisoformat(options["end"]) if options["end"] else None
        if end is not None and end.tzinfo is None:
            end = end.replace(tzinfo=dt.UTC)
        verbose = options["verbosity"] > 1

        def progress(done: int, target: int) -> None:
            if verbose:
                self.stdout.write(f"  {done:,} / {target:,} attempts")

        try:
            report = synth_ledger_generate(
                attempts=options["attempts"],
                days=options["days"],
                seed=options["seed"],
                end=end,
                catalogue=options["catalogue"],
                chain_slugs=options["chains"],
                build_rollups=not options["no_rollups"],
                breaker=not options["no_breaker"],
                progress=progress,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(str(report)))
