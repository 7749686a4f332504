"""Shared pieces of the budget tests: a priced chain, a slow adapter, and the cache backends
(local memory, and Redis from RANA_TEST_REDIS_URL) the holds live in."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.core.cache import cache

from providers.engine.types import ChatResponse, FailureClass, ProviderError, StreamEvent, Usage
from providers.models import ChainStep, FallbackChain, ModelPrice, Provider
from tests.servers import server_url

# $1 per million input tokens, $2 per million output tokens (as tests/gateway/seed.py prices).
PROMPT = [{"role": "user", "content": "x" * 40_000}]  # 10,000 tokens at 4 characters a token
MAX_TOKENS = 40_000
REAL_USAGE = Usage(input_tokens=10_000, output_tokens=MAX_TOKENS)
REAL_COST = Decimal("0.09")  # 10,000 x $1 + 40,000 x $2, per million
ESTIMATE = (Decimal(10_000 + 4) * 1 + MAX_TOKENS * 2) / 1_000_000  # what each request holds


BACKENDS = ["locmem", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=BACKENDS)
def backend(request, settings):
    """The cache the budgets live in: this process's memory, or Redis (shared by processes)."""
    if request.param == "redis":
        settings.CACHES = {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": server_url("RANA_TEST_REDIS_URL"),
                "KEY_PREFIX": f"rana-budget-{uuid.uuid4().hex[:8]}",
            }
        }
    if request.param == "locmem":
        cache.clear()
    yield request.param
    if request.param == "redis":
        cache.delete_pattern("*")  # only this test's prefix


@pytest.fixture
def priced_chain(db):
    provider = Provider.objects.create(name="first", kind="simulated")
    chain = FallbackChain.objects.create(name="Budgeted", slug="budgeted", is_default=True, default_retries=0)
    ChainStep.objects.create(chain=chain, position=0, provider=provider, model="m1")
    ModelPrice.objects.create(
        provider_kind="simulated",
        model="m1",
        input_per_mtok=Decimal("1"),
        output_per_mtok=Decimal("2"),
        effective_from=dt.date(2025, 1, 1),
    )
    return chain


class SlowAdapter:
    """Answers every call after `delay_s` (really awaited), billing `usage`; or fails with `error`."""

    kind = "fake"

    def __init__(self, delay_s: float = 0.05, usage: Usage = REAL_USAGE) -> None:
        self.delay_s = delay_s
        self.usage = usage
        self.error: BaseException | None = None
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.started = asyncio.Event()

    async def _wait(self) -> None:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.started.set()
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        if self.error is not None:
            raise self.error

    async def complete(self, request, client) -> ChatResponse:
        await self._wait()
        return ChatResponse(text="ok", finish_reason="stop", usage=self.usage, model=request.model)

    async def stream(self, request, client):
        await self._wait()
        yield StreamEvent(text="o")
        await asyncio.sleep(self.delay_s)
        yield StreamEvent(text="k")
        yield StreamEvent(finish_reason="stop", usage=self.usage)


def overrides(adapter: SlowAdapter) -> dict:
    return {"adapter_for": lambda kind: adapter}


def billed_failure() -> ProviderError:
    return ProviderError(FailureClass.SERVER_ERROR, "upstream said no", status=500, usage=REAL_USAGE)
