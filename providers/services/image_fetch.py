"""Fetch the images a protocol cannot take by reference (Gemini's inlineData), safely.

Only through the guarded image client (http_client.image_client): every address a host
resolves to is checked at connect time (no private, loopback, link-local or metadata
address unless the host is in RANA_ALLOWED_IMAGE_HOSTS), redirects are never followed,
the whole fetch is bounded by RANA_IMAGE_FETCH_TIMEOUT_S and the body by RANA_IMAGE_MAX_BYTES
(read in pieces, abandoned at the limit), and the bytes must be a png, jpeg, gif or webp
image whatever the server's Content-Type says. Any failure is an invalid_request naming the
image: the caller sent a URL RANA cannot use, and no other step would do better with it.

The engine calls `images_resolve` once per request, before the first step whose protocol
needs inline images; steps that take URLs (OpenAI, Anthropic) never wait for a fetch.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace

import httpx
from django.conf import settings

from providers.engine.types import FailureClass, ImagePart, Message, ProviderError
from providers.http_client import image_client

from .image_parts import sniff_media_type


def _refused(index: int, why: str) -> ProviderError:
    return ProviderError(FailureClass.INVALID_REQUEST, f"image {index + 1} could not be fetched: {why}")


async def _fetch(url: str, index: int, client: httpx.AsyncClient, limit: int) -> tuple[str, str]:
    request = client.build_request("GET", url, headers={"accept": "image/*"})
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise _refused(index, str(exc) or type(exc).__name__) from None
    try:
        if response.status_code != 200:
            raise _refused(index, f"HTTP {response.status_code}")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _refused(index, f"it is larger than the {limit:,}-byte limit")
        body = bytearray()
        try:
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise _refused(index, f"it is larger than the {limit:,}-byte limit")
        except httpx.HTTPError as exc:
            raise _refused(index, str(exc) or type(exc).__name__) from None
    finally:
        await response.aclose()
    media_type = sniff_media_type(bytes(body[:16]))
    if media_type is None:
        raise _refused(index, "the body is not a png, jpeg, gif or webp image")
    return media_type, base64.b64encode(body).decode("ascii")


async def images_resolve(messages: tuple[Message, ...]) -> tuple[Message, ...]:
    """The messages with every image URL fetched into inline data (data: URLs already are)."""
    pending = [p for m in messages for p in m.parts if isinstance(p, ImagePart) and not p.inline]
    if not pending:
        return messages
    client = image_client()
    limit = int(settings.RANA_IMAGE_MAX_BYTES)
    try:
        async with asyncio.timeout(float(settings.RANA_IMAGE_FETCH_TIMEOUT_S)):
            fetched = await asyncio.gather(*(_fetch(p.url, i, client, limit) for i, p in enumerate(pending)))
    except TimeoutError:
        raise ProviderError(
            FailureClass.INVALID_REQUEST,
            f"the images could not be fetched within {settings.RANA_IMAGE_FETCH_TIMEOUT_S:g}s",
        ) from None
    resolved = {id(p): replace(p, media_type=t, data=d) for p, (t, d) in zip(pending, fetched, strict=True)}
    return tuple(
        replace(m, parts=tuple(resolved.get(id(p), p) for p in m.parts)) if m.parts else m for m in messages
    )
