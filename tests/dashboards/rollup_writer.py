"""One ledger writer process, for tests/dashboards/test_rollup_writers_pg.py.

    DJANGO_SETTINGS_MODULE=tests.settings DATABASE_URL=postgres://... \
        python -m tests.dashboards.rollup_writer --seconds 25 --seed 1 --chains 1,2 --providers p1:1,p2:2

Writes requests (a completion and one or two attempts each) through the real write-behind
recorder (providers.services.ledger_writer.BufferedRecorder), so the rollups are added by the real
ledger_rows_written receiver on the recorder's writer thread, as in a served worker process.
Every request falls in the same few hours, chains, providers, models and outcomes, so two of
these processes add to the same rollup rows all the time. It prints "ready", waits for a line
on stdin (so both processes start writing together), writes for --seconds, flushes, and prints
one JSON line: what it wrote, and what the rollup writes met (from the log and the retry counts).

--pre-fix: the control experiment. The rollup rows are written as before the fix: one
single-row upsert after the other (executemany) in the order the batch happens to hold them,
provider status too, and a failure is not retried. Under the same load two such processes
deadlock (see the note in test_rollup_writers_pg.py). --unsorted: a second control, today's
statements with only the sort left out (they deadlock too, less often: they are faster).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import random
import sys
import time
from collections import Counter
from decimal import Decimal

OUTCOMES = ["success", "success", "success", "server_error", "timeout", "rate_limited"]
MODELS = ["m1", "m2"]


class Seen(logging.Handler):
    """Counts the rollup and ledger log records, and the deadlocks among them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.levels: Counter[str] = Counter()
        self.deadlocks = 0
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.levels[record.levelname] += 1
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]!r}"
        if "deadlock" in text.lower() or "40P01" in text:
            self.deadlocks += 1
        if record.levelno >= logging.WARNING and len(self.messages) < 20:
            self.messages.append(text[:300])


def _pre_fix() -> None:
    """Put back, in this process, the rollup writes from before the fix (see --pre-fix)."""
    from django.db import connection

    from dashboards.rollups import incremental, status, upsert

    def rollup_increment(spec, rows) -> int:
        keys, measures = ("grain", "bucket", *spec.dims), tuple(spec.measure_names)
        adapters = upsert._adapters(spec.rollup, [*keys, *measures])
        params = [
            upsert._params(adapters, [grain, bucket, *key, *(values[m] for m in measures)])
            for grain, bucket, key, values in rows  # in batch order, as they came
        ]
        with connection.cursor() as cursor:
            cursor.executemany(upsert.increment_sql(spec.rollup, keys, measures), params)
        return len(params)

    def provider_status_note(notes) -> None:
        field = status.ProviderStatus._meta.get_field("last_success_at")
        params = [
            [name, injected, field.get_db_prep_save(n.last_success_at, connection),
             field.get_db_prep_save(n.last_error_at, connection), n.last_error_class,
             n.last_error_status, n.last_error_message]
            for (name, injected), n in notes.items()
        ]  # fmt: skip
        if params:
            with connection.cursor() as cursor:
                cursor.executemany(status._upsert_sql(), params)

    incremental.rollup_increment = rollup_increment
    incremental.provider_status_note = provider_status_note
    incremental.TRIES = 1


def _request(rng: random.Random, args, start: dt.datetime) -> list:
    from providers.models import Attempt, Completion
    from providers.models.ledger import new_request_id
    from providers.services.recorder import PendingRow

    rid = new_request_id()
    chain_id = rng.choice(args.chains)
    at = start + dt.timedelta(seconds=rng.uniform(0, args.hours * 3600))
    steps = rng.sample(args.providers, k=min(len(args.providers), rng.choice([1, 1, 2])))
    attempts, when, answer = [], at, None
    for position, (name, provider_id) in enumerate(steps):
        outcome = "success" if position == len(steps) - 1 and rng.random() < 0.7 else rng.choice(OUTCOMES)
        latency = rng.lognormvariate(6, 1)
        cost = Decimal(rng.randint(0, 10_000)) / Decimal(10**7) if outcome == "success" else None
        fields = {
            "completion_id": rid,
            "started_at": when,
            "chain_id": chain_id,
            "source": "api",
            "step_position": position,
            "provider_id": provider_id,
            "provider_name": name,
            "provider_kind": "simulated",
            "model": rng.choice(MODELS),
            "outcome": outcome,
            "latency_ms": latency,
            "ttft_ms": latency / 3 if outcome == "success" and rng.random() < 0.5 else None,
            "input_tokens": rng.randint(1, 500),
            "output_tokens": rng.randint(0, 300) if outcome == "success" else 0,
            "cost_usd": cost,
            "unpriced": cost is None and outcome == "success",
            "error_message": "" if outcome == "success" else f"{outcome} upstream",
        }
        attempts.append(fields)
        when += dt.timedelta(milliseconds=latency)
        if outcome == "success":
            answer = (position, provider_id, fields["model"])
            break
    completion = {
        "id": rid,
        "created_at": at,
        "chain_id": chain_id,
        "chain_slug": f"chain-{chain_id}",
        "source": "api",
        "gateway_key_prefix": rng.choice(["", "rk_a", "rk_b"]),
        "outcome": "success" if answer else "failed",
        "answered_provider_id": answer[1] if answer else None,
        "answered_model": answer[2] if answer else "",
        "answered_step": answer[0] if answer else None,
        "fallback_used": bool(answer and answer[0] > 0),
        "attempt_count": len(attempts),
        "latency_ms": sum(a["latency_ms"] for a in attempts),
        "input_tokens": sum(a["input_tokens"] for a in attempts),
        "output_tokens": sum(a["output_tokens"] for a in attempts),
        "cost_usd": sum((a["cost_usd"] or Decimal(0) for a in attempts), Decimal(0)),
        "unpriced": any(a["unpriced"] for a in attempts),
    }
    # As the service submits them: each attempt as it ends, then the finished completion.
    return [*(PendingRow(Attempt, a) for a in attempts), PendingRow(Completion, completion)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=25)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=300, help="requests per second")
    parser.add_argument("--start", default="2025-03-10T22:00:00+00:00", help="first hour written to")
    parser.add_argument("--hours", type=int, default=4)
    parser.add_argument("--chains", required=True, help="chain ids, comma-separated")
    parser.add_argument("--providers", required=True, help="name:id pairs, comma-separated")
    parser.add_argument("--flush-ms", type=float, default=50, help="the recorder's flush interval")
    parser.add_argument("--announce-s", type=float, default=0.2, help="how often rollups are added")
    parser.add_argument("--pre-fix", action="store_true", help="the control experiment (see above)")
    parser.add_argument("--unsorted", action="store_true", help="today's statements, rows not sorted")
    args = parser.parse_args()
    args.chains = [int(c) for c in args.chains.split(",")]
    args.providers = [(p.split(":")[0], int(p.split(":")[1])) for p in args.providers.split(",")]

    import django

    django.setup()
    from django.db import connection

    from dashboards.rollups import incremental
    from providers.services.ledger_writer import BufferedRecorder

    seen = Seen()
    for name in ("rana.dashboards", "rana.ledger"):
        logging.getLogger(name).addHandler(seen)
    if args.pre_fix:
        _pre_fix()
    if args.unsorted:  # a second control: only the sort left out (rows merged per key already)
        from dashboards.rollups import upsert

        upsert.ordered = list
        incremental.TRIES = 1
    with connection.cursor() as cursor:  # connect now, not on the clock
        cursor.execute("SELECT 1")
    connection.close()
    recorder = BufferedRecorder(interval_s=args.flush_ms / 1000, announce_every_s=args.announce_s)
    rng = random.Random(args.seed)
    start = dt.datetime.fromisoformat(args.start)
    print("ready", flush=True)
    sys.stdin.readline()

    began = time.monotonic()
    requests = attempts = 0
    tick = 0.02
    while (elapsed := time.monotonic() - began) < args.seconds:
        due = int(elapsed * args.rate) + 1 - requests  # keep the rate however late a tick wakes
        for _ in range(max(0, min(due, int(args.rate)))):
            rows = _request(rng, args, start)
            for row in rows:
                recorder.submit(row)
            requests += 1
            attempts += len(rows) - 1
        time.sleep(tick)
    wrote_s = time.monotonic() - began
    flushed = recorder.flush(timeout_s=60)
    flushed_s = time.monotonic() - began
    recorder.close(timeout_s=3)
    stats = dict(getattr(incremental, "STATS", {}))
    print(
        json.dumps(
            {
                "requests": requests,
                "attempts": attempts,
                "seconds": [round(wrote_s, 2), round(flushed_s, 2), round(time.monotonic() - began, 2)],
                "flushed": flushed,
                "log_levels": dict(seen.levels),
                "logged_deadlocks": seen.deadlocks,
                "messages": seen.messages,
                "stats": stats,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
