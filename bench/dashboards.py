"""Dashboard speed at scale: every page and chart JSON for the 30-day range, p50/p95 per URL.

    DATABASE_URL=sqlite:////tmp/rana-bench.sqlite3 .venv/bin/python bench/dashboards.py
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rana_bench .venv/bin/python bench/dashboards.py

Migrates the database, generates a synthetic ledger (rana_synth_ledger: --attempts over
--days, ending now) when it holds fewer attempts than asked, runs ANALYZE, then requests each
URL --runs times (after --warmup untimed requests) through Django's test client with
production settings (DEBUG off), as a logged-in user, and prints the timings. Targets: every
URL under 150 ms at p95. Options: --tz (the viewer's zone, several allowed), --json FILE.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rana_site.settings")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(64))
os.environ.setdefault("RANA_ENCRYPTION_KEYS", base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
os.environ.setdefault("RANA_STATICFILES_STORAGE", "django.contrib.staticfiles.storage.StaticFilesStorage")
os.environ.setdefault("LOG_LEVEL", "WARNING")

CHARTS = [
    "rates", "attempts-by-provider", "failure-rates", "latency", "ttft", "funnel",
    "spend-by-provider", "spend-by-model", "tokens", "failure-cost", "fallback-premium",
    "spend-by-source", "spend-by-key",
]  # fmt: skip
TARGET_MS = 150.0


def _urls() -> list[tuple[str, dict]]:
    htmx = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "dashboard-body"}
    urls = [
        ("/dashboards/?range=30d", {}),
        ("/dashboards/?range=30d (htmx fragment)", htmx),
        ("/dashboards/cost/?range=30d", {}),
        ("/dashboards/cost/?range=30d (htmx fragment)", htmx),
        ("/dashboards/status/?range=30d", {"HTTP_HX_REQUEST": "true"}),
    ]
    return urls + [(f"/dashboards/charts/{name}/?range=30d", {}) for name in CHARTS]


def _prepare(attempts: int, days: float) -> str:
    from django.core.management import call_command
    from django.db import connection

    from dashboards.services.synth_ledger import synth_ledger_generate
    from providers.models import Attempt

    call_command("migrate", verbosity=0)
    have = Attempt.objects.count()
    if have >= attempts * 0.98:
        return f"ledger present: {have:,} attempts"
    began = time.monotonic()
    report = synth_ledger_generate(attempts=attempts - have, days=days)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return f"generated in {time.monotonic() - began:.0f} s: {report}"


def _client():
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    return client


def _time(client, url: str, headers: dict, tz: str, runs: int, warmup: int) -> list[float]:
    path = url.split(" ")[0]
    client.cookies["rana_tz"] = tz
    timings = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        response = client.get(path, **headers)
        elapsed = (time.perf_counter() - start) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{path}: HTTP {response.status_code}")
        if i >= warmup:
            timings.append(elapsed)
    return timings


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1]  # nearest rank


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attempts", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tz", action="append", help="Viewer timezone(s); default UTC.")
    parser.add_argument("--json", help="Also write the results to this file.")
    args = parser.parse_args()

    import django

    django.setup()
    from django.db import connection

    print(f"database: {connection.vendor} {connection.settings_dict['NAME']}")
    print(_prepare(args.attempts, args.days))
    client = _client()
    results, worst = [], 0.0
    for tz in args.tz or ["UTC"]:
        print(f"\nviewer timezone {tz}: {args.runs} timed runs per URL after {args.warmup} warm-up")
        print(f"{'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  URL")
        for url, headers in _urls():
            timings = _time(client, url, headers, tz, args.runs, args.warmup)
            p50, p95 = statistics.median(timings), _p(timings, 95)
            worst = max(worst, p95)
            flag = "" if p95 < TARGET_MS else "   <-- over target"
            print(f"{p50:8.1f} {p95:8.1f} {max(timings):8.1f}  {url}{flag}")
            results.append({"tz": tz, "url": url, "p50_ms": p50, "p95_ms": p95, "max_ms": max(timings)})
    print(f"\nworst p95: {worst:.1f} ms (target < {TARGET_MS:.0f} ms)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"vendor": connection.vendor, "results": results}, indent=2))


if __name__ == "__main__":
    main()
