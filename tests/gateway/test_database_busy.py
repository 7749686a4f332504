"""A busy database behind the API: answers go on (the ledger waits), or a clear 503; never a 500."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
from asgiref.sync import sync_to_async

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
