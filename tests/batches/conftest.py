"""Batch fixtures: a chain on the fake upstream ("primary", then "backup"), files of prompts."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from providers.models import ChainStep, FallbackChain, Provider
from tests.fakes import FakeUpstream


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()


@pytest.fixture
def main_chain(transactional_db, upstream: FakeUpstream) -> FallbackChain:
    provider = Provider(name="fake", kind="openai_compatible", base_url=upstream.base_url_for("openai"))
    provider.set_api_key("sk-local-BATCHKEY0123456789abcdef")
    provider.save()
    chain = FallbackChain.objects.create(
        name="Main", slug="main", is_default=True, default_retries=0, backoff_base_s=0
    )
    for position, model in enumerate(["primary", "backup"]):
        ChainStep.objects.create(chain=chain, position=position, provider=provider, model=model)
    return chain


def csv_file(count: int) -> bytes:
    lines = ["id,prompt,system"] + [f"q{i},prompt number {i},be brief" for i in range(count)]
    return ("\n".join(lines) + "\n").encode()


def prompt_of(request) -> str:
    """The user prompt a fake upstream request carried."""
    return next(m["content"] for m in request.messages if m["role"] == "user")
