"""A client that goes away cancels the upstream call, and the ledger says so."""

from __future__ import annotations

import asyncio
import json

import pytest

from providers.models import Completion
from rana_site.asgi import application
from tests.fakes import Fault

from .conftest import HELLO, ASGICall, auth

pytestmark = pytest.mark.django_db(transaction=True)


async def wait_for_outcome(request_id: str, outcome: str, timeout: float = 3.0) -> Completion:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        completion = await Completion.objects.filter(id=request_id).afirst()
        if completion is not None and completion.outcome == outcome:
            return completion
        assert asyncio.get_running_loop().time() < deadline, completion and completion.outcome
        await asyncio.sleep(0.01)


def header(call: ASGICall, name: str) -> str:
    start = next(m for m in call.sent if m["type"] == "http.response.start")
    return dict(start["headers"])[name.encode()].decode()


async def test_leaving_mid_stream_closes_the_upstream_and_records_cancelled(api_key, upstream):
    upstream.script("openai", [Fault.stalled_stream(after_chunks=2)], model="primary")
    body = json.dumps({"messages": HELLO, "stream": True}).encode()
    call = ASGICall("/v1/chat/completions", body, auth(api_key))
    served = asyncio.create_task(application(call.scope, call.receive, call.send))
    await asyncio.wait_for(call.first_body.wait(), 5)
    call.disconnect()
    await asyncio.wait_for(served, 5)
    assert await asyncio.to_thread(upstream.last_request.disconnected.wait, 3.0)
    completion = await wait_for_outcome(header(call, "x-rana-request-id"), "cancelled")
    assert completion.gateway_key_prefix == api_key[:13]
    assert not any(m.get("body", b"").startswith(b"data: [DONE]") for m in call.sent)


async def test_leaving_while_waiting_for_an_answer_cancels_the_upstream_call(api_key, upstream):
    upstream.script("openai", [Fault.hang()], model="primary")
    call = ASGICall("/v1/chat/completions", json.dumps({"messages": HELLO}).encode(), auth(api_key))
    served = asyncio.create_task(application(call.scope, call.receive, call.send))
    assert await asyncio.to_thread(lambda: upstream.wait_for(lambda: len(upstream.requests) == 1, 3.0))
    call.disconnect()
    await asyncio.wait_for(served, 5)
    assert await asyncio.to_thread(upstream.last_request.disconnected.wait, 3.0)
    assert call.sent == []  # nothing was answered to a client that is gone
    completion = await Completion.objects.aget(gateway_key_prefix=api_key[:13])
    assert completion.outcome == "cancelled" and len(upstream.requests) == 1
