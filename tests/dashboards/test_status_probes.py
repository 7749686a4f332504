"""/status/ shows, per provider, whether its health probes are on and the last probe's outcome."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from providers.models import Attempt, Completion, Provider
from providers.models.ledger import new_request_id

KEY = "sk-" + "c3D4" * 10


def _probe(provider: Provider, *, at: dt.datetime, outcome: str, error: str = "") -> None:
    completion = Completion.objects.create(
        id=new_request_id(),
        created_at=at,
        source="probe",
        outcome="success" if outcome == "success" else "failed",
    )
    Attempt.objects.create(
        completion=completion, started_at=at, source="probe", step_position=0, provider=provider,
        provider_name=provider.name, provider_kind=provider.kind, model="m1", outcome=outcome,
        latency_ms=40.0, error_message=error,
    )  # fmt: skip


@pytest.fixture
def probed(db) -> Provider:
    provider = Provider.objects.create(name="acme", kind="simulated", probe_enabled=True, probe_interval_s=30)
    Provider.objects.create(name="quiet", kind="simulated")
    now = timezone.now()
    _probe(provider, at=now - dt.timedelta(minutes=3), outcome="success")
    _probe(provider, at=now - dt.timedelta(seconds=20), outcome="server_error", error=f"no, key {KEY}")
    return provider


def _section(html: str, name: str) -> str:
    return html.split(f'data-provider="{name}"', 1)[1].split("</tbody>", 1)[0]


@pytest.mark.parametrize("htmx", [False, True])
def test_each_provider_shows_its_probes_and_the_last_probes_outcome(admin_client, probed, htmx):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    html = admin_client.get(reverse("status"), **headers).content.decode()
    acme = _section(html, "acme")
    assert "probe every 30 s" in acme
    assert "data-probe-outcome>server_error<" in acme  # the latest probe's, not the one before
    assert KEY not in html
    assert "probes off" in _section(html, "quiet")


def test_the_json_twin_carries_the_last_probe(admin_client, probed):
    rows = {row["name"]: row for row in admin_client.get(reverse("status-json")).json()["providers"]}
    probe = rows["acme"]["probe"]
    assert (probe["enabled"], probe["interval_s"]) == (True, 30)
    assert (probe["last"]["outcome"], probe["last"]["model"]) == ("server_error", "m1")
    assert KEY not in probe["last"]["error"]
    assert rows["quiet"]["probe"] == {"enabled": False, "interval_s": 60, "last": None}
