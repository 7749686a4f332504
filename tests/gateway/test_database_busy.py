"""A busy database behind the API: answers go on (the ledger waits), or a clear 503; never a 500."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
from asgiref.sync import sync_to_async

from providers.models import Completion
from providers.services import recorder
from tests.dblock import writes_blocked

from .conftest import HELLO, auth

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/v1/chat/completions"


@asynccontextmanager
async def blocked_writes(table: str):
    blocking = writes_blocked(table)
    await sync_to_async(blocking.__enter__)()
    try:
        yield
    finally:
        await sync_to_async(blocking.__exit__)(None, None, None)


@pytest.fixture
def buffered_ledger(monkeypatch):
    buffered = recorder.BufferedRecorder(interval_s=0.01)
    monkeypatch.setattr(recorder, "_recorder", buffered)
    yield buffered
    buffered.close()


async def test_requests_answer_while_the_ledger_is_locked_and_every_row_lands_later(
    api, api_key, upstream, buffered_ledger
):
    async with blocked_writes("providers_completion"):
        answers = [
            await api.post(
                URL, json={"model": "main", "messages": HELLO, "stream": i % 2 == 1}, headers=auth(api_key)
            )
            for i in range(4)
        ]
        assert [r.status_code for r in answers] == [200] * 4
        assert not await sync_to_async(buffered_ledger.flush)(0.5)  # still waiting for the lock
    assert await sync_to_async(buffered_ledger.flush)(10)
    ids = {r.headers["x-rana-request-id"] for r in answers}
    stored = await sync_to_async(
        lambda: {str(pk) for pk in Completion.objects.values_list("pk", flat=True)}
    )()
    assert stored == ids


@pytest.fixture
def sync_ledger(monkeypatch):
    """A synchronous ledger writer whose thread connects afresh (so it sees the short lock wait)."""
    synchronous = recorder.SyncRecorder()
    monkeypatch.setattr(recorder, "_recorder", synchronous)
    yield synchronous
    synchronous.close()


async def test_a_ledger_write_that_cannot_wait_is_a_503_json_error_with_retry_after(
    api, api_key, upstream, sync_ledger
):
    async with blocked_writes("providers_completion"):  # the test settings write the ledger synchronously
        response = await api.post(URL, json={"model": "main", "messages": HELLO}, headers=auth(api_key))
    assert response.status_code == 503 and response.headers["retry-after"] == "2"
    error = response.json()["error"]
    assert error["code"] == "database_busy" and error["type"] == "server_error"
    assert "The database is busy" in error["message"]
