"""The response cache: exact match on chain + normalised messages + parameters.

A chain's edit changes its key (the chain's updated_at is part of it), so a cached answer
never outlives the configuration that produced it.
"""

from __future__ import annotations

import dataclasses
import hashlib

import orjson
from django.core.cache import cache

from providers.engine.types import ChatParams, ChatResponse, Message, Usage


@dataclasses.dataclass(frozen=True, slots=True)
class CachedAnswer:
    text: str
    finish_reason: str | None
    model: str
    provider_id: int | None
    provider_name: str
    answered_step: int
    usage: Usage | None


def cache_key(chain_id: int, chain_version: float, messages: tuple[Message, ...], params: ChatParams) -> str:
    payload = {
        "chain": [chain_id, chain_version],
        "messages": [[m.role, m.content] for m in messages],
        "params": {k: v for k, v in dataclasses.asdict(params).items() if v not in (None, ())},
    }
    digest = hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"rana:resp:{digest}"


def cache_get(key: str) -> CachedAnswer | None:
    raw = cache.get(key)
    if not raw:
        return None
    data = orjson.loads(raw)
    usage = Usage(**data.pop("usage")) if data.get("usage") else None
    return CachedAnswer(usage=usage, **{k: v for k, v in data.items() if k != "usage"})


def cache_put(
    key: str, ttl_s: int, response: ChatResponse, *, provider_id, provider_name: str, answered_step: int
) -> None:
    data = {
        "text": response.text,
        "finish_reason": response.finish_reason,
        "model": response.model,
        "provider_id": provider_id,
        "provider_name": provider_name,
        "answered_step": answered_step,
        "usage": dataclasses.asdict(response.usage) if response.usage else None,
    }
    cache.set(key, orjson.dumps(data), timeout=ttl_s)
