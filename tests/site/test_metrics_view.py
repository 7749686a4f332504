"""/metrics' own access rule: off by default, then a bearer token and/or an address allowlist."""

from __future__ import annotations

import pytest

from providers.services import observe
from rana_site.proxies import parse_trusted_proxies

pytestmark = pytest.mark.django_db

TOKEN = "scrape-token-0123456789"


@pytest.fixture
def metrics_on(settings):
    settings.RANA_METRICS = True
    settings.RANA_METRICS_TOKEN = ""
    settings.RANA_METRICS_ALLOW_NETWORKS = parse_trusted_proxies(["127.0.0.1", "::1"])
    observe.observe_reset()
    yield settings
    observe.observe_reset()


def test_off_by_default_is_a_404_even_with_a_token(client, settings):
    assert settings.RANA_METRICS is False
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404


def test_on_serves_the_text_format_without_a_login(client, metrics_on):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert b"# TYPE rana_requests_total counter" in response.content


def test_token_missing_is_401_wrong_is_403_right_is_200(client, metrics_on):
    metrics_on.RANA_METRICS_TOKEN = TOKEN
    metrics_on.RANA_METRICS_ALLOW_NETWORKS = ()
    missing = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Basic abc"}).status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"}, REMOTE_ADDR="203.0.113.9")
    assert wrong.status_code == 403
    right = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, REMOTE_ADDR="203.0.113.9")
    assert right.status_code == 200


def test_allowlist_refuses_other_addresses(client, metrics_on):
    metrics_on.RANA_METRICS_ALLOW_NETWORKS = parse_trusted_proxies(["10.1.0.0/16"])
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.2.0.1").status_code == 403
    assert client.get("/metrics").status_code == 403  # 127.0.0.1 is not in it


def test_allowlist_and_token_are_both_required_when_both_set(client, metrics_on):
    metrics_on.RANA_METRICS_TOKEN = TOKEN
    metrics_on.RANA_METRICS_ALLOW_NETWORKS = parse_trusted_proxies(["10.1.0.0/16"])
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/metrics", headers=auth, REMOTE_ADDR="10.9.9.9").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.1.0.5").status_code == 401
    assert client.get("/metrics", headers=auth, REMOTE_ADDR="10.1.0.5").status_code == 200


def test_forwarded_client_counts_only_behind_a_trusted_proxy(client, metrics_on):
    metrics_on.RANA_METRICS_ALLOW_NETWORKS = parse_trusted_proxies(["10.1.0.0/16"])
    forwarded = {"X-Forwarded-For": "10.1.0.7"}
    assert client.get("/metrics", headers=forwarded, REMOTE_ADDR="192.0.2.1").status_code == 403
    metrics_on.RANA_TRUSTED_PROXY_NETWORKS = parse_trusted_proxies(["192.0.2.1"])
    assert client.get("/metrics", headers=forwarded, REMOTE_ADDR="192.0.2.1").status_code == 200
    spoofed = {"X-Forwarded-For": "203.0.113.5"}
    assert client.get("/metrics", headers=spoofed, REMOTE_ADDR="192.0.2.1").status_code == 403


def test_default_allowlist_is_loopback_when_no_token_is_set():
    from django.conf import settings

    assert settings.RANA_METRICS_TOKEN == ""
    assert [str(n) for n in settings.RANA_METRICS_ALLOW_NETWORKS] == ["127.0.0.1/32", "::1/128"]
