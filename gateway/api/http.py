"""The gateway's own request and response: plain data, so one handler serves both the lean
ASGI path (gateway.asgi) and Django views (gateway.views); and the reading of an ASGI body
within its limits."""

from __future__ import annotations

import asyncio
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
    query: str = ""  # the query string, undecoded


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


class BodyTooLarge(Exception):
    """The body is past the size limit (413)."""


class BodyTimeout(Exception):
    """The body did not arrive in time (408: a client trickling its body cannot hold a worker)."""


async def read_body(
    receive: Callable[[], Awaitable[dict[str, Any]]],
    content_length: str,
    *,
    max_bytes: int,
    timeout_s: float,
) -> bytes | None:
    """An ASGI request's whole body, None when the client left first.

    Raises BodyTooLarge past `max_bytes` (a Content-Length that says so is refused before any
    byte is read) and BodyTimeout when the whole body has not arrived within `timeout_s`.
    """
    if content_length.isdigit() and int(content_length) > max_bytes:
        raise BodyTooLarge
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > max_bytes:
                    raise BodyTooLarge
                parts.append(chunk)
                if not message.get("more_body", False):
                    return parts[0] if len(parts) == 1 else b"".join(parts)
    except TimeoutError:
        raise BodyTimeout from None
