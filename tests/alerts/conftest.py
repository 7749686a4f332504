"""Alerts fixtures: ledger rows to seed, a webhook receiver on 127.0.0.1 that checks signatures."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone

from providers.models import Attempt, Completion


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Budget spend is cached per chain id; ids come back after a rolled-back test."""
    cache.clear()
    yield
    cache.clear()


def seed_completion(
    chain, *, fallback=False, cost="0", outcome="success", at=None, key_prefix=""
) -> Completion:
    return Completion.objects.create(
        id=uuid.uuid4(), created_at=at or timezone.now(), chain=chain, chain_slug=chain.slug, source="api",
        outcome=outcome, fallback_used=fallback, cost_usd=Decimal(cost), gateway_key_prefix=key_prefix,
    )  # fmt: skip


def seed_calls(chain, provider, *, ok: int, failed: int, outcome="server_error", at=None) -> None:
    """`ok` successful and `failed` failed calls of `provider`, one completion each."""
    at = at or timezone.now()
    for index, result in enumerate(["success"] * ok + [outcome] * failed):
        completion = seed_completion(chain, at=at - dt.timedelta(seconds=index % 50))
        Attempt.objects.create(
            completion=completion, started_at=completion.created_at, chain=chain, source="api",
            step_position=0,
            provider=provider, provider_name=provider.name, provider_kind=provider.kind, model="m",
            outcome=result, latency_ms=1.0,
        )  # fmt: skip


def verify_signature(secret: str, headers, body: bytes) -> bool:
    """What a receiver does: HMAC-SHA256 over "<timestamp>.<body>", compared in constant time."""
    expected = hmac.new(secret.encode(), headers["X-Rana-Timestamp"].encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(headers["X-Rana-Signature"], "sha256=" + expected.hexdigest())


@dataclass
class Receiver:
    """Answers each POST with the next scripted status (then 200) and keeps what it was sent."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    received: list[tuple[Any, bytes, int]] = field(default_factory=list)  # headers, body, status answered
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self, status: int = 200) -> list[dict]:
        return [json.loads(body) for _, body, answered in self.received if answered == status]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                status = state.statuses.pop(0) if state.statuses else 200
                state.received.append((self.headers, body, status))  # case-insensitive
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}/hook"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def eager_retries():
    """Eager tasks run their retries in place, at once (countdowns are not waited), rather than
    raising Retry to the caller (task_eager_propagates, which the rest of the suite keeps on)."""
    from rana_site.celery import app

    previous = app.conf.task_eager_propagates
    app.conf.task_eager_propagates = False
    yield
    app.conf.task_eager_propagates = previous
