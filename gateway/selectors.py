"""Reads for the API."""

from __future__ import annotations

from typing import Any

from django.db import close_old_connections

from gateway.services.key_cache import KeyInfo
from providers.models import FallbackChain


def chains_for_key(key: KeyInfo, *, slug: str | None = None) -> list[dict[str, Any]]:
    """The chains a key may use, as OpenAI model objects (sync; call off the event loop)."""
    close_old_connections()
    chains = FallbackChain.objects.order_by("slug")
    if key.chain_ids is not None:
        chains = chains.filter(id__in=key.chain_ids)
    if slug is not None:
        chains = chains.filter(slug=slug)
    return [
        {"id": c.slug, "object": "model", "created": int(c.created_at.timestamp()), "owned_by": "rana"}
        for c in chains.only("slug", "created_at")
    ]
