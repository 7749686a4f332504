"""The chain admin's what-if: the order of attempts, worst-case time and cost with providers down."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from providers.models import ChainStep, FallbackChain, ModelPrice
from providers.services.plans import chain_what_if, chain_worst_case
from tests.providers import conftest_admin

sim_providers = conftest_admin.sim_providers
three_step_chain = conftest_admin.three_step_chain

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain(three_step_chain) -> FallbackChain:
    """sim-a, sim-b, sim-c on sim-small ($1 / $2 a million), one retry each, 5 s timeouts."""
    ModelPrice.objects.create(
        provider_kind="simulated",
        model="sim-small",
        input_per_mtok=Decimal(1),
        output_per_mtok=Decimal(2),
        effective_from=dt.date(2025, 1, 1),
    )
    FallbackChain.objects.filter(pk=three_step_chain.pk).update(step_timeout_s=5, max_retry_after_s=0)
    return FallbackChain.objects.get(pk=three_step_chain.pk)


def what_if(client: Client, chain: FallbackChain, **query) -> str:
    url = reverse("admin:providers_fallbackchain_what_if", args=[chain.pk])
    response = client.get(url, {"prompt_tokens": 1000, "output_tokens": 500, **query})
    assert response.status_code == 200
    return response.content.decode()


def rows(html: str) -> list[str]:
    return [part.split(">", 1)[0] for part in html.split("<tr data-step=")[1:]]


def test_an_outage_skips_its_steps_and_shortens_the_worst_case(admin_client, chain, sim_providers):
    html = what_if(admin_client, chain, down=[sim_providers[1].pk])
    assert rows(html) == ['"0"', '"1" data-down', '"2"']
    assert "down: skipped without a call" in html and html.count("2 calls") == 2
    # 2 steps x (a 5 s attempt, 0.5 s backoff, 5 s again: the connect is inside each attempt's
    # bound); every call billed 1000 x $1 + 500 x $2 a million
    assert "4 upstream calls, up to 21.0 s before the caller gets an answer" in html
    assert "<strong data-worst-cost>$0.0080</strong>" in html
    case = chain_what_if(chain=chain, down={sim_providers[1].pk}).case
    assert (case.upstream_calls, case.seconds) == (4, 21.0)


def test_with_every_provider_up_it_is_the_chain_pages_worst_case(admin_client, chain):
    html = what_if(admin_client, chain)
    case = chain_worst_case(chain=chain)
    assert (case.upstream_calls, case.seconds) == (6, 31.5)  # 3 steps x (5 s, 0.5 s backoff, 5 s)
    assert "6 upstream calls, up to 31.5 s" in html and "$0.0120" in html


def test_the_order_follows_the_chains_strategy(admin_client, chain):
    ChainStep.objects.filter(chain=chain, position=2).update(model="sim-tiny")
    ModelPrice.objects.create(
        provider_kind="simulated",
        model="sim-tiny",
        input_per_mtok=Decimal("0.1"),
        output_per_mtok=Decimal("0.2"),
        effective_from=dt.date(2025, 1, 1),
    )
    FallbackChain.objects.filter(pk=chain.pk).update(strategy="cheapest_first")
    html = what_if(admin_client, chain)
    assert rows(html) == ['"2"', '"0"', '"1"']
    assert "by estimated cost: $0.00020, $0.0020, $0.0020." in html


def test_the_change_page_offers_a_checkbox_per_provider(admin_client, chain, sim_providers):
    html = admin_client.get(reverse("admin:providers_fallbackchain_change", args=[chain.pk])).content.decode()
    assert f'action="{reverse("admin:providers_fallbackchain_what_if", args=[chain.pk])}"' in html
    for provider in sim_providers:
        assert f'type="checkbox" name="down" value="{provider.pk}"' in html


def test_the_what_if_needs_a_staff_login(chain):
    url = reverse("admin:providers_fallbackchain_what_if", args=[chain.pk])
    response = Client().get(url)
    assert response.status_code == 302 and response["Location"] == f"/accounts/login/?next={url}"
