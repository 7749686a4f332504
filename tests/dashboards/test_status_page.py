"""/status/: every provider and model's circuit and health, live; its JSON twin; the buttons."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from providers.models import Attempt, ChainStep, CircuitAction, Completion, FallbackChain, Provider
from providers.models.ledger import new_request_id
from providers.services import breaker as breaker_module
from providers.services import health as health_module
from providers.services.breaker import CircuitBreaker
from providers.services.breaker_local import LocalCircuits
from providers.services.breaker_policy import BreakerPolicy

KEY = "sk-" + "a1B2" * 10


@pytest.fixture
def fresh_state(monkeypatch):
    """A breaker of the test's own (in memory) and no cached health figures."""
    breaker = CircuitBreaker(BreakerPolicy(threshold=1), circuits=LocalCircuits())
    monkeypatch.setattr(breaker_module, "_breaker", breaker)
    monkeypatch.setattr(health_module, "CACHE_S", 0.0)
    return breaker


@pytest.fixture
def served(db, fresh_state):
    provider = Provider.objects.create(name="acme", kind="simulated")
    chain = FallbackChain.objects.create(name="Main", slug="main")
    ChainStep.objects.create(chain=chain, provider=provider, position=0, model="m1")
    now = timezone.now()
    completion = Completion.objects.create(
        id=new_request_id(), created_at=now, source="api", outcome="success"
    )
    for i in range(10):
        failed = i < 2
        Attempt.objects.create(
            completion=completion, started_at=now - dt.timedelta(seconds=60 - i), source="api",
            step_position=0, provider=provider, provider_name="acme", provider_kind="simulated", model="m1",
            outcome="server_error" if failed else "success", latency_ms=120.0 + i, retry_index=i,
            error_message=f"upstream said no, key {KEY}" if failed else "",
        )  # fmt: skip
    return provider


def test_the_status_page_needs_a_login(client, db):
    for name in ("status", "status-json"):
        response = client.get(reverse(name))
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert client.post(reverse("status-circuit")).status_code == 302


def test_each_model_shows_its_circuit_and_health(admin_client, served):
    html = admin_client.get(reverse("status")).content.decode()
    assert 'data-model="m1"' in html and "error rate 20 % over 15 min" in html
    assert "<span data-score>80</span>" in html and 'hx-trigger="every 10s"' in html
    assert KEY not in html
    assert 'href="/status/"' in admin_client.get(reverse("dashboards:index")).content.decode()  # the nav


def test_the_json_twin_has_the_same_rows_keys_masked(admin_client, served):
    response = admin_client.get(reverse("status-json"))
    assert response["Content-Type"] == "application/json" and KEY not in response.content.decode()
    (provider,) = json.loads(response.content)["providers"]
    (model,) = provider["models"]
    assert (provider["name"], model["model"], model["circuit"], model["score"]) == (
        "acme",
        "m1",
        "closed",
        80,
    )
    assert model["calls"] == 10 and model["success_rate"] == 0.8


def test_staff_open_a_circuit_by_hand_and_it_is_recorded(admin_client, admin_user, served, fresh_state):
    response = admin_client.post(
        reverse("status-circuit"),
        {"provider_id": served.pk, "model": "m1", "action": "open"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200 and "open · by hand" in response.content.decode()
    (state,) = [s for s in fresh_state.states() if s["model"] == "m1"]
    assert state["state"] == "open" and state["manual"]
    action = CircuitAction.objects.get()
    assert (action.action, action.username, action.model) == ("open", admin_user.username, "m1")
    page = admin_client.get(reverse("status")).content.decode()
    assert f"open by hand by {admin_user.username}" in page
    admin_client.post(reverse("status-circuit"), {"provider_id": served.pk, "model": "m1", "action": "close"})
    assert not [s for s in fresh_state.states() if s["state"] != "closed"]


def test_a_user_who_is_not_staff_cannot_change_a_circuit(client, served, fresh_state):
    user = get_user_model().objects.create_user("viewer", password="pw-for-tests-only")
    client.force_login(user)
    response = client.post(
        reverse("status-circuit"), {"provider_id": served.pk, "model": "m1", "action": "open"}
    )
    assert response.status_code == 403 and not CircuitAction.objects.exists()
    assert "circuit-actions" not in client.get(reverse("status")).content.decode()  # no buttons either


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"provider_id": "x", "model": "m1", "action": "open"},
        {"provider_id": "1", "model": "m1", "action": "melt"},
    ],
)
def test_a_bad_circuit_action_is_a_clear_400(admin_client, served, form):
    response = admin_client.post(reverse("status-circuit"), form)
    assert response.status_code == 400 and response.content.decode().startswith("Bad circuit action")
    assert not CircuitAction.objects.exists()


def test_an_unknown_provider_is_a_clear_400(admin_client, served):
    response = admin_client.post(
        reverse("status-circuit"), {"provider_id": 999, "model": "m1", "action": "open"}
    )
    assert response.status_code == 400 and "no provider with id 999" in response.content.decode()
