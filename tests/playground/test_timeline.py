"""The attempt timeline: money, cache hits, masking, and CSRF on every POST endpoint."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from playground.models import PlaygroundRun
from playground.templatetags.playground_tags import masked, ms, usd
from providers.models import FallbackChain
from tests.playground.asgi_server import form_data

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("value", "unpriced", "shown"),
    [
        (Decimal("0.0000237"), False, "$0.0000237"),
        (Decimal("0.012345"), False, "$0.012345"),
        (Decimal("1.5"), False, "$1.50"),
        (Decimal("0"), False, "$0"),
        (None, True, "unpriced"),
        (Decimal("0"), True, "unpriced"),
        (None, False, "—"),
    ],
)
def test_money_keeps_fractions_of_a_cent_and_never_shows_unpriced_as_free(value, unpriced, shown):
    assert usd(value, unpriced) == shown


def test_milliseconds_and_masking():
    assert (ms(None), ms(12.4), ms(2750)) == ("—", "12 ms", "2.75 s")
    assert "sk-proj-abcdefghijklmnopqrstuvwx" not in masked("bad key sk-proj-abcdefghijklmnopqrstuvwx")


def test_a_cache_hit_is_shown_as_such(user_client, chains):
    FallbackChain.objects.filter(slug="two").update(cache_ttl_s=60)
    FallbackChain.objects.get(slug="two").save()  # a save invalidates the cached plan
    user_client.post(reverse("playground:send"), form_data(stream=""))
    user_client.post(reverse("playground:send"), form_data(stream=""))
    run = PlaygroundRun.objects.order_by("-created_at").first()
    html = user_client.get(reverse("playground:run_answer", args=[run.pk]), HTTP_HX_REQUEST="true").content
    assert b'data-completion-outcome="cache_hit"' in html and b"Served from the response cache" in html
    assert run.outcome == "cache_hit" and run.answer


def _post_urls(run: PlaygroundRun) -> list[str]:
    return [
        reverse("playground:send"),
        reverse("playground:compare"),
        reverse("playground:replay", args=[run.pk]),
        reverse("playground:run_complete", args=[run.pk]),
        reverse("playground:tool_results", args=[run.pk]),
    ]


def test_every_post_endpoint_enforces_csrf(csrf_client, user_client, chains):
    user_client.post(reverse("playground:send"), form_data(stream=""), HTTP_HX_REQUEST="true")
    run = PlaygroundRun.objects.get()
    page = csrf_client.get(reverse("playground:index")).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    for url in _post_urls(run):
        assert csrf_client.post(url, form_data(chain_b="solo")).status_code == 403, url
    response = csrf_client.post(
        reverse("playground:run_complete", args=[run.pk]), HTTP_X_CSRFTOKEN=token, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and b"Simulated answer" in response.content


def test_every_page_needs_a_login(chains):
    anonymous = Client()
    for name in ("index", "history", "compare", "faults"):
        response = anonymous.get(reverse(f"playground:{name}"))
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], name


def test_a_run_left_running_by_a_stopped_server_is_shown_as_lost(user_client, chains, user):
    run = PlaygroundRun.objects.create(user=user, chain_slug="two", status="running")
    PlaygroundRun.objects.filter(pk=run.pk).update(created_at=run.created_at - timedelta(hours=2))
    html = user_client.get(reverse("playground:run_answer", args=[run.pk]), HTTP_HX_REQUEST="true").content
    assert b"never finished" in html and b"hx-trigger" not in html and b"is-busy" not in html
