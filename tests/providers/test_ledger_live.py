"""An attempt is in the database within 100 ms of ending, while its request still runs."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache

from providers.engine.types import ChatResponse
from providers.models import Attempt, ChainStep, Completion, FallbackChain, Provider
from providers.services.completions import complete
from tests.providers.engine_fakes import fail

pytestmark = pytest.mark.django_db(transaction=True)


class FailThenWait:
    """Step 1 fails at once; step 2 answers only when the test releases it."""

    kind = "fake"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.failed_at: float | None = None

    async def complete(self, request, client):
        if request.provider.name == "first":
            self.failed_at = time.monotonic()
            raise fail("server_error", status=503)
        await self.release.wait()
        return ChatResponse(text="late", finish_reason="stop", usage=None, model=request.model)


async def test_first_attempt_is_stored_while_the_request_is_still_running(buffered_ledger):
    cache.clear()
    first = await Provider.objects.acreate(name="first", kind="simulated")
    second = await Provider.objects.acreate(name="second", kind="simulated")
    chain = await FallbackChain.objects.acreate(name="live", slug="live", default_retries=0)
    await ChainStep.objects.acreate(chain=chain, position=0, provider=first, model="m")
    await ChainStep.objects.acreate(chain=chain, position=1, provider=second, model="m")
    adapter = FailThenWait()
    request = asyncio.create_task(
        complete(
            chain="live",
            messages=[{"role": "user", "content": "hi"}],
            overrides={"adapter_for": lambda k: adapter},
        )
    )
    exists = sync_to_async(Attempt.objects.filter(provider_name="first", outcome="server_error").exists)
    deadline = time.monotonic() + 2
    while not await exists():
        assert time.monotonic() < deadline, "the first attempt never reached the database"
        await asyncio.sleep(0.002)
    visible_after = time.monotonic() - adapter.failed_at
    assert not request.done(), "the request should still be waiting on step 2"
    assert visible_after < 0.1, f"attempt reached the database after {visible_after * 1000:.0f} ms"
    adapter.release.set()
    result = await request
    assert buffered_ledger.flush(5)
    completion = await Completion.objects.aget(id=result.request_id)
    assert completion.outcome == "success" and completion.fallback_used
