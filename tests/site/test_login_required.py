"""Every page needs a logged-in user; only the login page (and the health probe, and /metrics with
its own token and allowlist: test_metrics_view.py) do not."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

PUBLIC = {"/accounts/login/", "/healthz", "/admin/login/", "/metrics"}


def plain_urls(patterns=None, prefix="/") -> list[str]:
    """Every URL without parameters that the site serves (admin included)."""
    urls = []
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        route = str(entry.pattern)
        if "<" in route or "(?P" in route or route.startswith("^"):
            continue
        if isinstance(entry, URLResolver):
            urls += plain_urls(entry.url_patterns, prefix + route)
        elif isinstance(entry, URLPattern):
            urls.append(prefix + route)
    return sorted(set(urls))


@pytest.mark.django_db
def test_every_page_but_login_needs_a_logged_in_user(client):
    urls = [u for u in plain_urls() if u not in PUBLIC and not u.startswith("/v1/")]
    assert "/playground/" in urls and "/dashboards/" in urls and "/admin/" in urls
    for url in urls:
        response = client.get(url)
        assert response.status_code in (302, 401, 403, 405), f"{url} answered {response.status_code}"
        if response.status_code == 302:
            assert "/login/" in response["Location"], f"{url} redirected to {response['Location']}"


@pytest.mark.django_db
def test_login_page_is_public_and_health_says_only_ok(client):
    assert client.get("/accounts/login/").status_code == 200
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
