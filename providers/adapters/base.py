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
    """Optional attributes the engine reads with getattr:

    - ``capabilities``: frozenset of what the protocol can carry (types.CAPABILITIES); a step
      whose request needs more is skipped without a call (capability_skipped).
    - ``inline_images``: True when the protocol cannot take image URLs, so the engine fetches
      them (guarded) into ImagePart.data before the first attempt on it.
    - ``cannot_serve(messages, params) -> str | None``: a reason this protocol cannot carry
      this particular request (a JSON Schema keyword it has no equivalent for, say): the
      step is skipped with that reason, like a missing capability.
    """

    kind: str

    async def complete(self, request: ChatRequest, client: httpx.AsyncClient) -> ChatResponse:
        """One non-streaming call."""
        ...

    def stream(self, request: ChatRequest, client: httpx.AsyncClient) -> AsyncIterator[StreamEvent]:
        """One streaming call: an async generator of events. Closing it closes the upstream."""
        ...
