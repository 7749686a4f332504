"""Webhooks that spokes send on an operator's behalf (alerts), through the guarded client.

The same connect-time guard as upstream calls (providers.http_client): no private, loopback,
link-local or metadata address unless the host is listed in RANA_ALLOWED_WEBHOOK_HOSTS (its own
list: the upstream allowlist is not inherited), redirects never followed, the response capped.
Secrets for signing are kept like provider keys (MultiFernet, providers.secrets).
"""

from __future__ import annotations

import asyncio

from django.conf import settings

from providers.http_client import build_client
from providers.secrets import decrypt, encrypt, mask
from providers.url_safety import WEBHOOK_ALLOWLIST, UnsafeUpstreamURL, check_upstream_url

RESPONSE_MAX_BYTES = 64 * 1024

__all__ = ["secret_decrypt", "secret_encrypt", "secret_mask", "webhook_post", "webhook_url_check"]


def secret_encrypt(plaintext: str) -> str:
    return encrypt(plaintext)


def secret_decrypt(ciphertext: str) -> str:
    return decrypt(ciphertext)


def secret_mask(plaintext: str) -> str:
    return mask(plaintext)


def webhook_url_check(url: str) -> None:
    """Raise ValueError naming why RANA refuses to post to `url` (checked again at connect time)."""
    try:
        check_upstream_url(url, allowed_hosts=settings.RANA_ALLOWED_WEBHOOK_HOSTS, setting=WEBHOOK_ALLOWLIST)
    except UnsafeUpstreamURL as exc:
        raise ValueError(str(exc)) from None


async def _post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
    client = build_client(
        allowed_hosts=settings.RANA_ALLOWED_WEBHOOK_HOSTS,
        setting=WEBHOOK_ALLOWLIST,
        max_connections=4,
        max_body_bytes=RESPONSE_MAX_BYTES,
    )
    try:
        response = await client.post(url, content=body, headers=headers, timeout=timeout_s)
        return response.status_code
    finally:
        await client.aclose()


def webhook_post(*, url: str, body: bytes, headers: dict[str, str], timeout_s: float = 10.0) -> int:
    """POST `body` to `url` and return the HTTP status; raise ValueError for a refused URL and
    httpx.HTTPError when no answer came (an address refused at connect time included).
    Blocking: for Celery tasks, not the event loop."""
    webhook_url_check(url)
    return asyncio.run(_post(url, body, headers, timeout_s))
