"""With Redis as the cache (REDIS_URL), the API path never waits on it on the event loop,
and limits, budgets and cached answers are shared through it.

Runs against the Redis server that scripts/test starts (RANA_TEST_REDIS_URL)."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from django.core.cache import cache

from gateway.services.keys import gateway_key_create
from providers.models import FallbackChain
from tests.servers import server_url

from .conftest import HELLO, auth

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]
URL = "/v1/chat/completions"


@pytest.fixture
def redis_cache(settings):
    prefix = f"rana-test-{uuid.uuid4().hex[:8]}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": server_url("RANA_TEST_REDIS_URL"),
            "KEY_PREFIX": prefix,
        }
    }
    yield cache
    cache.delete_pattern("*")  # django-redis: only this test's prefix


@pytest.fixture
def calls_on_the_loop(monkeypatch, redis_cache):
    """Every Redis command the cache client sends, with whether it ran on an event loop's thread."""
    from django_redis.client import DefaultClient

    seen: list[tuple[str, bool]] = []
    for name in ("get", "set", "add", "incr", "get_many", "delete"):
        original = getattr(DefaultClient, name)

        def spy(self, *args, _name=name, _original=original, **kwargs):
            try:
                asyncio.get_running_loop()
                on_loop = True
            except RuntimeError:
                on_loop = False
            seen.append((_name, on_loop))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(DefaultClient, name, spy)
    return seen


async def test_the_api_never_waits_on_redis_on_the_event_loop(api, main_chain, upstream, calls_on_the_loop):
    main_chain.cache_ttl_s = 60
    main_chain.daily_budget_usd = Decimal("100")
    await main_chain.asave()
    _info, key = await asyncio.to_thread(gateway_key_create, name="limited", rpm_limit=100)
    for _ in range(2):  # the second is a cached answer
        response = await api.post(URL, json={"model": "main", "messages": HELLO}, headers=auth(key))
        assert response.status_code == 200
    assert response.headers["x-rana-cache"] == "hit"
    used = {name for name, _ in calls_on_the_loop}
    assert {"get", "incr"} <= used, used  # rate limit, versions, budget, response cache
    assert [c for c in calls_on_the_loop if c[1]] == []


async def test_a_rate_limit_is_shared_through_redis(api, main_chain, upstream, redis_cache):
    _info, key = await asyncio.to_thread(gateway_key_create, name="two-per-minute", rpm_limit=2)
    statuses = [
        (await api.post(URL, json={"model": "main", "messages": HELLO}, headers=auth(key))).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    counters = await asyncio.to_thread(redis_cache.keys, "rana:rpm:*")
    assert len(counters) == 1 and await asyncio.to_thread(redis_cache.get, counters[0]) == 3


async def test_a_chain_budget_is_counted_in_redis(api, main_chain, upstream, redis_cache):
    await FallbackChain.objects.filter(pk=main_chain.pk).aupdate(daily_budget_usd=Decimal("100"))
    _info, key = await asyncio.to_thread(gateway_key_create, name="spender")
    response = await api.post(URL, json={"model": "main", "messages": HELLO}, headers=auth(key))
    assert response.status_code == 200
    spent = await asyncio.to_thread(redis_cache.get, _budget_key(main_chain.pk))
    assert spent == int(Decimal(response.headers["x-rana-cost-usd"]) * 1_000_000_000)


def _budget_key(chain_id: int) -> str:
    from django.utils import timezone

    return f"rana:spend:{chain_id}:day:{timezone.localtime():%Y%m%d}"
