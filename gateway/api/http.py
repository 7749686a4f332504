"""The gateway's own request and response: plain data, so one handler serves both the lean
ASGI path (gateway.asgi) and Django views (gateway.views)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

JSON = "application/json"
SSE = "text/event-stream; charset=utf-8"


@dataclass(slots=True)
class ApiRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""


@dataclass(slots=True)
class ApiResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None  # server-sent events, sent as they come
    on_close: Callable[[], Awaitable[Any]] | None = field(default=None, repr=False)

    async def aclose(self) -> None:
        """Release what a streamed response holds, even if it was never sent."""
        if self.stream is not None:
            await self.stream.aclose()  # type: ignore[attr-defined]
        if self.on_close is not None:
            await self.on_close()


def json_response(status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> ApiResponse:
    return ApiResponse(status, [("content-type", JSON), *headers], orjson.dumps(payload))
