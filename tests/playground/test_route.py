"""The attempt timeline says which order the chain's steps were tried in, and why."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse

from playground.models import PlaygroundRun
from providers.models import FallbackChain, ModelPrice
from tests.playground.asgi_server import form_data

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_timeline_shows_the_order_and_why(user_client, chains):
    two, _solo = chains
    for model, price in (("m1", 10), ("m2", 1)):
        ModelPrice.objects.create(
            provider_kind="simulated",
            model=model,
            input_per_mtok=Decimal(price),
            output_per_mtok=Decimal(price),
            effective_from=dt.date(2025, 1, 1),
        )
    FallbackChain.objects.filter(pk=two.pk).update(strategy="cheapest_first")
    FallbackChain.objects.get(pk=two.pk).save()  # a save invalidates the cached plan
    user_client.post(reverse("playground:send"), form_data(stream="", max_tokens="100"))
    run = PlaygroundRun.objects.get()
    html = user_client.get(reverse("playground:run_timeline", args=[run.pk]), HTTP_HX_REQUEST="true")
    text = html.content.decode()
    assert run.outcome == "success" and 'data-route="cheapest_first"' in text
    # "hello there playground": 6 tokens, 4 a message, and 100 output, at $1 and $10 a million
    assert "step 2 (second / m2)</span> → <span" in text and "step 1 (first / m1)" in text
    assert "by estimated cost: $0.00011, $0.0011" in text
