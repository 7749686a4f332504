"""The admin's provider "test connection" (one max_tokens 1 request through the real adapter,
against the fake upstream, its outcome in words) and the ledger pages' rounded figures."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from providers.models import Attempt, Completion, Provider, ProviderKind
from tests.fakes import Fault

pytestmark = pytest.mark.django_db(transaction=True)


def _provider(upstream, **fields) -> Provider:
    return Provider.objects.create(
        name="fake",
        kind=ProviderKind.OPENAI_COMPATIBLE,
        base_url=upstream.base_url_for("openai_compatible"),
        probe_model="primary",
        **fields,
    )


def _said(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def test_the_change_page_has_a_test_connection_button(admin_client, upstream):
    provider = _provider(upstream)
    html = admin_client.get(reverse("admin:providers_provider_change", args=[provider.pk])).content.decode()
    url = reverse("admin:providers_provider_test_connection", args=[provider.pk])
    assert f'action="{url}"' in html and "Test connection" in html


def test_test_connection_sends_one_token_and_says_it_worked(admin_client, upstream):
    provider = _provider(upstream)  # probes off: the test runs anyway
    url = reverse("admin:providers_provider_test_connection", args=[provider.pk])
    response = admin_client.post(url, follow=True)
    assert response.redirect_chain[-1][0] == reverse("admin:providers_provider_change", args=[provider.pk])
    [(level, words)] = _said(response)
    assert level == "success" and words.startswith("“fake” answered: model primary replied in ")
    sent = upstream.last_request.json
    assert (sent["model"], sent["max_tokens"], len(upstream.requests)) == ("primary", 1, 1)
    completion = Completion.objects.get()  # recorded as a probe
    assert (completion.source, completion.outcome) == ("probe", "success")
    assert str(completion.pk) in words


def test_a_failing_provider_is_told_in_words_not_a_500(admin_client, upstream):
    provider = _provider(upstream)
    upstream.script(None, [Fault.error("server_error")])
    response = admin_client.post(reverse("admin:providers_provider_test_connection", args=[provider.pk]))
    assert response.status_code == 302
    [(level, words)] = _said(response)
    assert level == "error" and "“fake” failed the test: model primary — server_error, HTTP 500" in words


def test_a_provider_with_no_model_to_ask_says_so(admin_client, upstream):
    provider = _provider(upstream)
    Provider.objects.filter(pk=provider.pk).update(probe_model="")
    response = admin_client.post(reverse("admin:providers_provider_test_connection", args=[provider.pk]))
    [(level, words)] = _said(response)
    assert level == "error" and "no model to ask" in words
    assert upstream.requests == []


def test_the_list_action_tests_each_selected_provider(admin_client, upstream):
    provider = _provider(upstream)
    response = admin_client.post(
        reverse("admin:providers_provider_changelist"),
        {"action": "test_connection", "_selected_action": [provider.pk]},
    )
    assert response.status_code == 302
    assert [level for level, _ in _said(response)] == ["success"]


def test_test_connection_needs_a_post(admin_client, upstream):
    provider = _provider(upstream)
    url = reverse("admin:providers_provider_test_connection", args=[provider.pk])
    assert admin_client.get(url).status_code == 405
    assert upstream.requests == []


@pytest.fixture
def ledger_row(upstream) -> Completion:
    provider = _provider(upstream)
    now = timezone.now()
    completion = Completion.objects.create(
        created_at=now,
        chain_slug="demo",
        source="api",
        outcome="success",
        answered_step=1,
        latency_ms=1234.56789,
        cost_usd=Decimal("0.0001234567"),
    )
    Attempt.objects.create(
        completion=completion,
        started_at=now - dt.timedelta(seconds=1),
        source="api",
        step_position=1,
        provider=provider,
        provider_name=provider.name,
        provider_kind=provider.kind,
        model="primary",
        outcome="success",
        latency_ms=987.654321,
        cost_usd=Decimal("0.0001234567"),
    )
    return completion


@pytest.mark.parametrize("model", ["completion", "attempt"])
def test_the_ledger_pages_show_rounded_figures_and_steps_from_one(admin_client, ledger_row, model):
    listing = admin_client.get(reverse(f"admin:providers_{model}_changelist")).content.decode()
    pk = ledger_row.pk if model == "completion" else ledger_row.attempts.get().pk
    page = admin_client.get(reverse(f"admin:providers_{model}_change", args=[pk])).content.decode()
    latency = "1,234.6" if model == "completion" else "987.7"
    for html in (listing, page):
        assert latency in html and "0.000123" in html
        assert "1234.56789" not in html and "987.654321" not in html and "0.0001234567" not in html
    assert (
        '<td class="field-answered_step_shown">2</td>' in listing
        or '<td class="field-step_shown">2</td>' in listing
    )
