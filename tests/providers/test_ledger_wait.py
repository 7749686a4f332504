"""Reading a completion another worker process is still writing: wait for it, or say so."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.urls import reverse

from providers.models.ledger import new_request_id
from providers.selectors import completion_timeline
from providers.services import ledger_await

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]

# Another process's write-behind buffer: the attempt first, the completion `delay` s later.
WRITER = """
import time, uuid
from django.utils import timezone
from providers.models import Attempt, Completion
rid = uuid.UUID({rid!r})
time.sleep({delay})
Attempt.objects.create(completion_id=rid, started_at=timezone.now(), source="api", step_position=0,
    provider_name="p", provider_kind="simulated", model="m", outcome="success", latency_ms=1.0)
time.sleep({delay})
Completion.objects.create(id=rid, created_at=timezone.now(), source="api", outcome="success", attempt_count=1)
"""


def _database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def _other_process_writes(rid, delay: float) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": _database_url(), "DJANGO_SETTINGS_MODULE": "rana_site.settings"}
    code = WRITER.format(rid=str(rid), delay=delay)
    return subprocess.Popen([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env)


def test_a_reader_waits_for_rows_another_process_is_still_writing():
    rid = new_request_id()
    writer = _other_process_writes(rid, delay=0.3)
    started = time.monotonic()
    assert ledger_await(request_id=rid, timeout_s=30)
    assert writer.wait(30) == 0
    assert time.monotonic() - started >= 0.6  # it really waited for both rows
    timeline = completion_timeline(request_id=rid)
    assert timeline.completion is not None and len(timeline.attempts) == 1 and not timeline.writing


def test_rows_not_written_in_time_are_shown_as_still_being_written(admin_client):
    rid = new_request_id()
    writer = _other_process_writes(rid, delay=3.0)
    try:
        deadline = time.monotonic() + 30
        while completion_timeline(request_id=rid) is None:  # the attempt is in, the completion not yet
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert not ledger_await(request_id=rid, timeout_s=0.2)
        response = admin_client.get(reverse("completions:detail", args=[rid]))
        assert response.status_code == 200
        assert "data-ledger-writing" in response.content.decode()
    finally:
        assert writer.wait(30) == 0
    response = admin_client.get(reverse("completions:detail", args=[rid]))
    assert "data-ledger-writing" not in response.content.decode()
