"""The adapter contract: one request in, a response or a stream out, one error type.

Adapters never retry and never follow redirects; the engine alone decides what a failure
means. Every failure is a ProviderError carrying its FailureClass, HTTP status and
Retry-After, with any key masked out of its message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import httpx

from providers.engine.types import ChatRequest, ChatResponse, StreamEvent


class Adapter(Protocol):
    kind: str

    async def complete(self, request: ChatRequest, client: httpx.AsyncClient) -> ChatResponse:
        """One non-streaming call."""
        ...

    def stream(self, request: ChatRequest, client: httpx.AsyncClient) -> AsyncIterator[StreamEvent]:
        """One streaming call: an async generator of events. Closing it closes the upstream."""
        ...
