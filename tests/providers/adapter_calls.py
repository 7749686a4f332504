"""Helpers for adapter tests: call an adapter either way, catch its one error type."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest

from providers.adapters.registry import get_adapter
from providers.engine.types import ChatRequest, ChatResponse, ProviderError, StreamEvent

HTTP_KINDS = ("openai", "anthropic", "gemini")


async def call(
    request: ChatRequest, client: httpx.AsyncClient, *, stream: bool
) -> ChatResponse | list[StreamEvent]:
    adapter = get_adapter(request.provider.kind)
    if stream:
        return [event async for event in adapter.stream(request, client)]
    return await adapter.complete(request, client)


async def failure(request: ChatRequest, client: httpx.AsyncClient, *, stream: bool) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await call(request, client, stream=stream)
    return caught.value


async def stream_until_failure(
    request: ChatRequest, client: httpx.AsyncClient
) -> tuple[list[StreamEvent], ProviderError]:
    events: list[StreamEvent] = []
    with pytest.raises(ProviderError) as caught:
        async for event in get_adapter(request.provider.kind).stream(request, client):
            events.append(event)
    return events, caught.value


def text_of(events: list[StreamEvent]) -> str:
    return "".join(event.text for event in events)


def assert_key_hidden(error: ProviderError, key: str) -> None:
    for shown in (str(error), repr(error), error.message, *map(str, error.args)):
        assert key not in shown


async def poll(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True
