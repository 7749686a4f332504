"""The shared upstream client (httpx API over aiohttp): guard, pooling, closing, errors."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from providers.http_client import build_client
from tests.fakes import FakeUpstream, Fault

BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("10.255.255.1", "RANA's upstream guard"),
        ("169.254.169.254", "metadata"),
        ("[::1]", "loopback"),
        ("0x7f000001", "loopback"),
        ("localhost", "loopback"),
        ("2130706433", "not a canonical IPv4 address"),
        ("127.1", "not a canonical IPv4 address"),
    ],
)
async def test_non_public_addresses_are_refused_before_connecting(host, why):
    async with build_client(allowed_hosts=[]) as client:
        with pytest.raises(httpx.ConnectError, match=why):
            await client.get(f"http://{host}:9/v1/models", timeout=httpx.Timeout(2.0))


async def test_keep_alive_connections_are_reused(fake_upstream: FakeUpstream):
    opened = fake_upstream.connections_opened
    async with build_client(allowed_hosts=["127.0.0.1"]) as client:
        for _ in range(3):
            response = await client.post(f"{fake_upstream.base_url}/v1/chat/completions", json=BODY)
            assert response.status_code == 200 and response.json()["object"] == "chat.completion"
    assert fake_upstream.connections_opened - opened == 1


async def test_closing_a_stream_early_closes_the_upstream_connection(fake_upstream: FakeUpstream):
    fake_upstream.script("openai", [Fault.stalled_stream(after_chunks=1)])
    async with build_client(allowed_hosts=["127.0.0.1"]) as client:
        request = client.build_request(
            "POST", f"{fake_upstream.base_url}/v1/chat/completions", json={**BODY, "stream": True}
        )
        response = await client.send(request, stream=True)
        chunks = response.aiter_bytes()
        assert await anext(chunks)
        await response.aclose()
        seen = fake_upstream.last_request.disconnected
        assert await asyncio.to_thread(seen.wait, 2.0), "the upstream never saw the client leave"


async def test_read_timeout_is_httpx_read_timeout(fake_upstream: FakeUpstream):
    fake_upstream.script("openai", [Fault.hang()])
    async with build_client(allowed_hosts=["127.0.0.1"]) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(
                f"{fake_upstream.base_url}/v1/chat/completions", json=BODY, timeout=httpx.Timeout(0.2)
            )


async def test_a_post_is_sent_once_even_when_the_connection_breaks(fake_upstream: FakeUpstream):
    fake_upstream.script("openai", [Fault.reset(after_chunks=0)])
    async with build_client(allowed_hosts=["127.0.0.1"]) as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.post(f"{fake_upstream.base_url}/v1/chat/completions", json=BODY)
    assert len(fake_upstream.requests) == 1
