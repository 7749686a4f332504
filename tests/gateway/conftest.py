"""Gateway fixtures: the fake upstream, chains on it, keys, and the ASGI app in-process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from django.core.cache import cache

from gateway.services.keys import gateway_key_create
from providers.models import ChainStep, FallbackChain, Provider
from tests.fakes import FakeUpstream

STORED_KEY = "sk-local-STOREDKEY0123456789abcdef"
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()


@pytest.fixture
def provider(transactional_db, upstream: FakeUpstream) -> Provider:
    provider = Provider(name="fake", kind="openai_compatible", base_url=upstream.base_url_for("openai"))
    provider.set_api_key(STORED_KEY)
    provider.save()
    return provider


def make_chain(slug: str, models: list[str], provider: Provider, **options: Any) -> FallbackChain:
    options = {"default_retries": 0, "backoff_base_s": 0, **options}
    chain = FallbackChain.objects.create(name=slug.title(), slug=slug, **options)
    for position, model in enumerate(models):
        ChainStep.objects.create(chain=chain, position=position, provider=provider, model=model)
    return chain


@pytest.fixture
def main_chain(provider: Provider) -> FallbackChain:
    """The default chain: primary, then backup."""
    return make_chain("main", ["primary", "backup"], provider, is_default=True)


@pytest.fixture
def solo_chain(provider: Provider) -> FallbackChain:
    return make_chain("solo", ["solo"], provider)


@pytest.fixture
def api_key(main_chain: FallbackChain, solo_chain: FallbackChain) -> str:
    """A key for every chain."""
    return gateway_key_create(name="tests")[1]


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for rana_site.asgi.application (the lean /v1/ path), in-process."""
    from rana_site.asgi import application

    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def sse_data(body: bytes) -> list[str]:
    """The data of each server-sent event, in order."""
    return [line.removeprefix("data: ") for line in body.decode().split("\n\n") if line.startswith("data: ")]


def sse_json(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(data) for data in sse_data(body) if data != "[DONE]"]


class ASGICall:
    """One raw ASGI request whose client can go away: disconnect() ends the connection."""

    def __init__(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        self.scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "query_string": b"",
            "headers": [(k.encode(), v.encode()) for k, v in {"host": "127.0.0.1", **headers}.items()],
        }
        self.body = body
        self.sent: list[dict[str, Any]] = []
        self.first_body = asyncio.Event()
        self._gone = asyncio.Event()
        self._body_sent = False

    def disconnect(self) -> None:
        self._gone.set()

    async def receive(self) -> dict[str, Any]:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            self.first_body.set()
