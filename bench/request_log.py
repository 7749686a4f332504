"""Request log speed at scale: the first page and filtered pages of /requests/, p50/p95 per URL.

    .venv/bin/python bench/request_log.py --completions 1000000
    .venv/bin/python bench/request_log.py --database-url postgres://postgres@127.0.0.1:5432/rana_bench

The database (default sqlite:////tmp/rana-bench-requests.sqlite3, or --database-url) is
migrated and filled with the synthetic ledger of bench/dashboards.py (rana_synth_ledger's
service, without rollups: the log reads the ledger alone) until it holds --completions over
--days; then ANALYZE, and each URL is requested --runs times (after --warmup) through
Django's test client with production settings, as a logged-in user. Target: p95 < 150 ms.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from pathlib import Path

# bench/dashboards.py: its environment (production settings) and its timing helpers.
_spec = importlib.util.spec_from_file_location("bench_dashboards", Path(__file__).with_name("dashboards.py"))
bench_dashboards = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_dashboards)

TARGET_MS = bench_dashboards.TARGET_MS
ATTEMPTS_PER_COMPLETION = 1.05  # the synthetic mix (measured); re-measured after each batch


def _prepare(completions: int, days: float) -> str:
    from django.core.management import call_command
    from django.db import connection

    from dashboards.services.synth_ledger import synth_ledger_generate
    from providers.models import Attempt, Completion

    call_command("migrate", verbosity=0)
    began, ratio, seed = time.monotonic(), ATTEMPTS_PER_COMPLETION, 7
    while (have := Completion.objects.count()) < completions * 0.98:
        synth_ledger_generate(
            attempts=int((completions - have) * ratio), days=days, seed=seed, build_rollups=False
        )
        ratio = max(Attempt.objects.count() / max(Completion.objects.count(), 1), 1.0)
        seed += 1
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    attempts = Attempt.objects.count()
    return f"{have:,} completions, {attempts:,} attempts (ready in {time.monotonic() - began:.0f} s)"


def _deep_cursor() -> str:
    """The cursor halfway down the log: a page as deep as any a reader will click to."""
    from gateway.requestlog.query import Cursor
    from providers.models import Completion

    middle = Completion.objects.count() // 2
    rows = Completion.objects.order_by("-created_at", "-id").values("created_at", "id")[middle : middle + 1]
    return str(Cursor(rows[0]["created_at"], rows[0]["id"])) if rows else ""


def _urls() -> list[str]:
    return [
        "/requests/",
        f"/requests/?older={_deep_cursor()}",
        "/requests/?chain=support&outcome=failed",
        "/requests/?chain=premium&outcome=success&fallback=yes",
        "/requests/?q=rk_Zc&search_in=key",
        "/requests/?key=rk_b3Vw&range=24h",
        "/requests/?latency_above=5000",
        "/requests/?provider=vllm-local",
        "/requests/?q=read+timeout",  # provider error text: thousands of matches
        "/requests/?q=timeout",  # a commoner text
        "/requests/?q=no+such+error+text",  # nothing matches: every error text is read
        "/requests/?q=zq7",  # nothing matches, and a text too short for the planners' estimates
        "/requests/?q=read+timeout&range=24h",  # with a range: only its attempts are read
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--completions", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()
    os.environ["DATABASE_URL"] = args.database_url or "sqlite:////tmp/rana-bench-requests.sqlite3"

    import django

    django.setup()
    from django.db import connection

    print(f"database: {connection.vendor} {connection.settings_dict['NAME']}")
    print(_prepare(args.completions, args.days))
    client, worst = bench_dashboards._client(), 0.0
    print(f"\n{args.runs} timed runs per URL after {args.warmup} warm-up")
    print(f"{'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  URL")
    for url in _urls():
        timings = bench_dashboards._time(client, url, {}, "UTC", args.runs, args.warmup)
        p50, p95 = statistics.median(timings), bench_dashboards._p(timings, 95)
        worst = max(worst, p95)
        flag = "" if p95 < TARGET_MS else "   <-- over target"
        print(f"{p50:8.1f} {p95:8.1f} {max(timings):8.1f}  {url[:100]}{flag}")
    print(f"\nworst p95: {worst:.1f} ms (target < {TARGET_MS:.0f} ms)")


if __name__ == "__main__":
    main()
