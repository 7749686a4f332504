"""The offline demo command and the bundled price table."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from providers.models import FallbackChain, ModelPrice, Provider
from providers.services.plans import chain_worst_case, price_lookup

pytestmark = pytest.mark.django_db

REQUIRED_MODELS = {
    "openai": [
        "gpt-5",
        "gpt-5-mini",
        "gpt-5-nano",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "gpt-4o",
        "gpt-4o-mini",
        "o3",
        "o4-mini",
    ],
    "anthropic": [
        "claude-opus-4-1",
        "claude-sonnet-4-5",
        "claude-sonnet-4",
        "claude-haiku-4-5",
        "claude-3-5-haiku-latest",
    ],
    "gemini": ["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.0-flash"],
    "simulated": ["sim-small", "sim-large"],
}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("rana_demo", *args, stdout=out)
    return out.getvalue()


def test_demo_creates_providers_chains_prices_and_an_admin():
    output = run()
    options = {p.name: p.options for p in Provider.objects.all()}
    assert set(options) == {"sim-fast", "sim-flaky", "sim-slow", "sim-down"}
    assert options["sim-flaky"]["failure_rate"] == pytest.approx(0.33)
    assert options["sim-flaky"]["failure_kinds"] == ["rate_limited", "server_error"]
    assert options["sim-slow"]["hang"] is True and options["sim-down"]["down"] is True
    demo = FallbackChain.objects.get(slug="demo")
    assert demo.is_default
    assert [s.provider.name for s in demo.steps.order_by("position")] == ["sim-flaky", "sim-slow", "sim-fast"]
    assert FallbackChain.objects.get(slug="fast").steps.get().provider.name == "sim-fast"
    assert price_lookup("simulated", "sim-small") is not None
    password = re.search(r"Password \(shown once, store it now\): (\S+)", output).group(1)
    assert get_user_model().objects.get(username="admin").check_password(password)


def test_demo_chain_answers_within_seconds_even_in_the_worst_case():
    run("--no-user")
    case = chain_worst_case(chain=FallbackChain.objects.get(slug="demo"))
    assert case.upstream_calls <= 6
    assert case.seconds <= 10


def test_second_run_changes_nothing_and_keeps_the_password():
    first = run()
    password = re.search(r"store it now\): (\S+)", first).group(1)
    stamps = list(Provider.objects.values_list("updated_at", flat=True))
    second = run()
    assert "already exists: left as it is" in second
    assert "password was not changed" in second
    assert password not in second
    assert list(Provider.objects.values_list("updated_at", flat=True)) == stamps
    assert get_user_model().objects.get(username="admin").check_password(password)


def test_force_puts_the_demo_back():
    run("--no-user")
    Provider.objects.filter(name="sim-flaky").update(options={"failure_rate": 1.0})
    assert FallbackChain.objects.get(slug="demo").steps.count() == 3
    run("--force", "--no-user")
    assert Provider.objects.get(name="sim-flaky").options["failure_rate"] == pytest.approx(0.33)


def test_no_user_skips_the_admin():
    assert "Password" not in run("--no-user")
    assert not get_user_model().objects.exists()


def test_price_table_covers_the_current_models_and_loads_idempotently():
    out = io.StringIO()
    call_command("rana_load_prices", stdout=out)
    for kind, models in REQUIRED_MODELS.items():
        for model in models:
            row = price_lookup(kind, model)
            assert row is not None, f"{kind}/{model}"
            assert row.input_per_mtok > 0 and row.output_per_mtok > row.input_per_mtok
            assert row.context_window
    count = ModelPrice.objects.count()
    again = io.StringIO()
    call_command("rana_load_prices", stdout=again)
    assert ModelPrice.objects.count() == count
    assert "0 created, 0 updated" in again.getvalue()


def test_dated_prices_pick_the_one_in_effect():
    call_command("rana_load_prices", stdout=io.StringIO())
    assert price_lookup("openai", "o3", on=dt.date(2025, 5, 1)).input_per_mtok == 10
    assert price_lookup("openai", "o3", on=dt.date(2025, 7, 1)).input_per_mtok == 2
    assert price_lookup("openai", "o3", on=dt.date(2025, 1, 1)) is None
