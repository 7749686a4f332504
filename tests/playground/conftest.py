"""Playground fixtures: a user, logged-in clients, a fast two-step simulated chain."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from providers.models import ChainStep, FallbackChain, Provider
from tests.playground.asgi_server import form_data

__all__ = ["form_data"]


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("ada", "ada@example.com", "correct-horse-9")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("bob", "bob@example.com", "correct-horse-9")


@pytest.fixture
def user_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def csrf_client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.fixture
def chains(db) -> tuple[FallbackChain, FallbackChain]:
    """ "two" (default): steps first/m1 then second/m2, no retries; "solo": second/m2 only."""
    first = Provider.objects.create(name="first", kind="simulated", options={"latency_ms": 0})
    second = Provider.objects.create(name="second", kind="simulated", options={"latency_ms": 0})
    two = FallbackChain.objects.create(
        name="Two steps", slug="two", is_default=True, default_retries=0, backoff_base_s=0
    )
    ChainStep.objects.create(chain=two, position=0, provider=first, model="m1")
    ChainStep.objects.create(chain=two, position=1, provider=second, model="m2")
    solo = FallbackChain.objects.create(name="Solo", slug="solo", default_retries=0, backoff_base_s=0)
    ChainStep.objects.create(chain=solo, position=0, provider=second, model="m2")
    return two, solo
