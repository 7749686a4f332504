"""Gateway keys in the admin: the key is shown once, then only its prefix."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from gateway.models import GatewayKey
from gateway.services.keys import gateway_key_create
from providers.models import Completion, FallbackChain

pytestmark = pytest.mark.django_db


def test_adding_a_key_shows_it_once(admin_client, admin_user):
    chain = FallbackChain.objects.create(name="Main", slug="main")
    response = admin_client.post(
        reverse("admin:gateway_gatewaykey_add"),
        {"name": "support-bot", "allowed_chains": [chain.pk], "rpm_limit": "120"},
        follow=True,
    )
    assert response.status_code == 200
    shown = re.findall(r"rana_[A-Za-z0-9]{40}", response.content.decode())
    assert len(shown) == 1
    key = GatewayKey.objects.get()
    assert key.prefix == shown[0][:13] and key.created_by == admin_user and key.rpm_limit == 120
    again = admin_client.get(reverse("admin:gateway_gatewaykey_change", args=[key.pk]))
    assert shown[0] not in again.content.decode() and key.prefix in again.content.decode()


def test_a_new_key_has_a_copy_button_beside_it(admin_client):
    response = admin_client.post(reverse("admin:gateway_gatewaykey_add"), {"name": "bot"}, follow=True)
    html = response.content.decode()
    assert re.search(r'<code id="new-gateway-key">rana_[A-Za-z0-9]{40}</code>', html)
    assert '<button type="button" data-copy-target="#new-gateway-key">Copy</button>' in html
    assert "js/copy.js" in html


def test_the_list_shows_status_chains_and_use_by_key(admin_client):
    key, _ = gateway_key_create(name="bot")
    Completion.objects.create(
        created_at=timezone.now(),
        source="api",
        gateway_key_prefix=key.prefix,
        outcome="success",
        cost_usd=Decimal("0.25"),
    )
    page = admin_client.get(reverse("admin:gateway_gatewaykey_changelist")).content.decode()
    assert key.prefix in page and "active" in page and "0.2500" in page


def test_the_revoke_action(admin_client):
    key, _ = gateway_key_create(name="bot")
    admin_client.post(
        reverse("admin:gateway_gatewaykey_changelist"),
        {"action": "revoke_keys", "_selected_action": [key.pk]},
    )
    key.refresh_from_db()
    assert key.is_revoked
