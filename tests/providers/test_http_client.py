"""The shared upstream client (httpx API over aiohttp): guard, pooling, closing, errors."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib

import httpx
import pytest

from providers.http_client import ResponseTooLarge, build_client
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


# --- the cap on what an upstream may send (RANA_UPSTREAM_MAX_BYTES) ---------------------------
CAP = 1024 * 1024


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_past_the_cap_is_refused_without_reading_it_whole(fake_upstream, chunked):
    fake_upstream.script("openai", [Fault.oversized(50_000_000, chunked=chunked)])
    async with build_client(allowed_hosts=["127.0.0.1"], max_body_bytes=CAP) as client:
        with pytest.raises(ResponseTooLarge, match="larger than the 1048576-byte cap") as caught:
            await client.post(f"{fake_upstream.base_url}/v1/chat/completions", json=BODY)
        assert isinstance(caught.value, httpx.DecodingError)  # the adapters' bad_response
        # the connection was dropped, not kept with 49 MB still to come: the next call opens one
        response = await client.post(f"{fake_upstream.base_url}/v1/chat/completions", json=BODY)
        assert response.status_code == 200


async def test_a_body_under_the_cap_is_read_whole(fake_upstream):
    fake_upstream.script("openai", [Fault.oversized(CAP - 10, chunked=True), Fault.oversized(CAP - 10)])
    async with build_client(allowed_hosts=["127.0.0.1"], max_body_bytes=CAP) as client:
        for _ in range(2):
            response = await client.post(f"{fake_upstream.base_url}/v1/chat/completions", json=BODY)
            assert len(response.content) == CAP - 10
            assert response.json()["choices"][0]["message"]["content"] == "Hello from the fake upstream."


async def test_a_stream_is_cut_once_its_bytes_pass_the_cap(fake_upstream):
    fake_upstream.script("openai", [Fault.oversized(50_000_000, after_chunks=1)])
    async with build_client(allowed_hosts=["127.0.0.1"], max_body_bytes=CAP) as client:
        request = client.build_request(
            "POST", f"{fake_upstream.base_url}/v1/chat/completions", json={**BODY, "stream": True}
        )
        response = await client.send(request, stream=True)
        seen = 0
        with pytest.raises(ResponseTooLarge):
            async for chunk in response.aiter_bytes():
                seen += len(chunk)
        await response.aclose()
        assert 0 < seen <= CAP


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9)


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", _gzip),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some servers send it
    ],
    ids=["gzip", "deflate", "raw-deflate"],
)
async def test_compressed_bodies_are_decoded(fake_upstream, encoding, encode):
    payload = json.dumps({"object": "chat.completion", "text": "é" * 1000}).encode()
    fake_upstream.script(
        "openai", [Fault.status(200, encode(payload), headers={"content-encoding": encoding})]
    )
    async with build_client(allowed_hosts=["127.0.0.1"], max_body_bytes=CAP) as client:
        response = await client.post(f"{fake_upstream.base_url}/v1/chat/completions", json=BODY)
    assert response.content == payload and response.json()["text"] == "é" * 1000


async def test_a_compressed_body_that_inflates_past_the_cap_is_refused(fake_upstream):
    bomb = _gzip(b"0" * (50 * CAP))  # 50 MiB of zeros in about 50 KB
    assert len(bomb) < CAP
    fake_upstream.script("openai", [Fault.status(200, bomb, headers={"content-encoding": "gzip"})] * 2)
    url = f"{fake_upstream.base_url}/v1/chat/completions"
    async with build_client(allowed_hosts=["127.0.0.1"], max_body_bytes=CAP) as client:
        with pytest.raises(ResponseTooLarge):
            await client.post(url, json=BODY)
        response = await client.send(client.build_request("POST", url, json=BODY), stream=True)
        with pytest.raises(ResponseTooLarge):
            async for _ in response.aiter_bytes():
                pass
        await response.aclose()


async def test_a_broken_gzip_body_is_a_decoding_error(fake_upstream):
    fake_upstream.script(
        "openai", [Fault.status(200, b"not gzip at all", headers={"content-encoding": "gzip"})]
    )
    async with build_client(allowed_hosts=["127.0.0.1"], max_body_bytes=CAP) as client:
        with pytest.raises(httpx.DecodingError, match="gzip body is broken"):
            await client.post(f"{fake_upstream.base_url}/v1/chat/completions", json=BODY)


async def test_without_a_cap_anything_is_read(fake_upstream):
    fake_upstream.script("openai", [Fault.oversized(3 * CAP, chunked=True)])
    async with build_client(allowed_hosts=["127.0.0.1"]) as client:
        response = await client.post(f"{fake_upstream.base_url}/v1/chat/completions", json=BODY)
    assert len(response.content) == 3 * CAP


async def test_the_shared_client_takes_its_cap_from_the_settings(settings):
    from providers.http_client import shared_client

    settings.RANA_UPSTREAM_MAX_BYTES = 12345
    assert shared_client().max_body_bytes == 12345
    settings.RANA_UPSTREAM_MAX_BYTES = 54321
    client = shared_client()
    assert client.max_body_bytes == 54321 and shared_client() is client
    await client.aclose()
