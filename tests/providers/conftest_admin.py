"""Fixtures for the admin, configuration and key tests (import the ones a module uses)."""

from __future__ import annotations

import secrets as std_secrets
from typing import Any

import pytest
from cryptography.fernet import Fernet

from providers.models import ChainStep, FallbackChain, Provider, ProviderKind

CHAIN_DEFAULTS: dict[str, Any] = {
    "description": "",
    "default_retries": "1",
    "backoff_base_s": "0.5",
    "backoff_cap_s": "8",
    "connect_timeout_s": "5",
    "step_timeout_s": "30",
    "first_token_timeout_s": "15",
    "idle_timeout_s": "30",
    "max_retry_after_s": "30",
    "deadline_s": "60",
    "max_attempts": "6",
    "content_filter_policy": "stop",
    "strategy": "ordered",
    "body_logging": "off",
    "body_log_chars": "2000",
}


@pytest.fixture
def provider_key() -> str:
    """A key shaped like an OpenAI key, different in every test."""
    return "sk-test-" + std_secrets.token_urlsafe(24)


@pytest.fixture
def fernet_keys() -> tuple[str, str]:
    """(old, new) Fernet keys for rotation tests."""
    return Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture
def sim_providers(db) -> list[Provider]:
    return [
        Provider.objects.create(name=name, kind=ProviderKind.SIMULATED, options={"latency_ms": 0})
        for name in ("sim-a", "sim-b", "sim-c")
    ]


@pytest.fixture
def three_step_chain(sim_providers) -> FallbackChain:
    chain = FallbackChain.objects.create(name="Three", slug="three")
    for position, provider in enumerate(sim_providers):
        ChainStep.objects.create(chain=chain, position=position, provider=provider, model="sim-small")
    return chain


def chain_form_data(name: str, slug: str, steps: list[dict[str, Any]], *, initial: int = 0) -> dict[str, Any]:
    """POST data for the chain admin: the chain fields plus the steps inline formset."""
    data: dict[str, Any] = {"name": name, "slug": slug, **CHAIN_DEFAULTS}
    data.update(
        {
            "steps-TOTAL_FORMS": str(len(steps)),
            "steps-INITIAL_FORMS": str(initial),
            "steps-MIN_NUM_FORMS": "0",
            "steps-MAX_NUM_FORMS": "1000",
        }
    )
    for index, step in enumerate(steps):
        for key, value in {"weight": "1", **step}.items():
            if value is True:
                value = "on"
            if value is not False and value is not None:
                data[f"steps-{index}-{key}"] = value
    return data


@pytest.fixture
def allow_local_upstreams(settings) -> None:
    """Let base URLs on 127.0.0.1 / localhost pass the URL guard, as a test run intends.

    (The root conftest sets RANA_ALLOWED_UPSTREAM_HOSTS, but pytest-django has read the
    settings before that file runs, so the setting is set here explicitly.)
    """
    settings.RANA_ALLOWED_UPSTREAM_HOSTS = ["127.0.0.1", "localhost"]
