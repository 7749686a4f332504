"""Every gateway key, in this process's memory: verification never waits on the database.

The whole table is one small query. It is reloaded when a key changes (a save or delete
bumps a version in the shared cache: this process at once, others within RECHECK_S), at
least every MAX_AGE_S (so a revocation reaches every worker even without a shared cache),
and when an unknown prefix shows up, at most every MISS_RELOAD_S (a new key works within
seconds, and a flood of made-up keys costs at most one query per interval).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import close_old_connections

from gateway.models import GatewayKey
from rana_site.cache_io import cache_run

log = logging.getLogger("rana.gateway")

VERSION_KEY = "rana:gateway-keys-version"
RECHECK_S = 1.0
MAX_AGE_S = 10.0
MISS_RELOAD_S = 2.0


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the request path needs to know about a key (no ORM object)."""

    id: int
    prefix: str
    name: str
    key_hash: str
    chain_ids: frozenset[int] | None  # None: every chain
    rpm_limit: int | None
    daily_budget_usd: object
    monthly_budget_usd: object
    expires_at: float | None  # epoch seconds
    revoked: bool

    def allows_chain(self, chain_id: int) -> bool:
        return self.chain_ids is None or chain_id in self.chain_ids


@dataclass(slots=True)
class _Snapshot:
    keys: dict[str, KeyInfo] = field(default_factory=dict)
    loaded_at: float = -math.inf  # monotonic
    version: object = None
    checked_at: float = -math.inf


_snapshot = _Snapshot()
_reload_lock = threading.Lock()


def key_info(key: GatewayKey, chain_ids: frozenset[int]) -> KeyInfo:
    return KeyInfo(
        id=key.pk,
        prefix=key.prefix,
        name=key.name,
        key_hash=key.key_hash,
        chain_ids=chain_ids or None,
        rpm_limit=key.rpm_limit,
        daily_budget_usd=key.daily_budget_usd,
        monthly_budget_usd=key.monthly_budget_usd,
        expires_at=key.expires_at.timestamp() if key.expires_at else None,
        revoked=key.revoked_at is not None,
    )


def keys_load_all() -> dict[str, KeyInfo]:
    """Every key by prefix, from the database (sync; runs off the event loop)."""
    close_old_connections()
    chains: dict[int, set[int]] = {}
    for key_id, chain_id in GatewayKey.allowed_chains.through.objects.values_list(
        "gatewaykey_id", "fallbackchain_id"
    ):
        chains.setdefault(key_id, set()).add(chain_id)
    return {k.prefix: key_info(k, frozenset(chains.get(k.pk, ()))) for k in GatewayKey.objects.all()}


def _reload(asked_at: float) -> None:
    """Reload the snapshot; if the database fails, keep serving the keys already known."""
    with _reload_lock:
        if _snapshot.loaded_at >= asked_at:
            return  # another request reloaded while this one waited
        loaded_at = time.monotonic()
        try:
            _snapshot.keys = keys_load_all()
        except Exception:
            if _snapshot.loaded_at == -math.inf and not _snapshot.keys:
                raise  # nothing known yet: the request fails
            log.exception("gateway keys could not be reloaded; using the %d known keys", len(_snapshot.keys))
            _snapshot.loaded_at = loaded_at - MAX_AGE_S + MISS_RELOAD_S  # try again in a moment
            return
        _snapshot.loaded_at = loaded_at


def keys_changed(**_kwargs) -> None:
    """Signal receiver: a key (or what it may use) changed; every process reloads.

    The version is a fresh random token, not a counter: a counter starts again from 1 when the
    cache is emptied (a Redis restart), and a process that last saw the same number would
    miss the change."""
    cache.set(VERSION_KEY, uuid.uuid4().hex, timeout=None)
    _snapshot.loaded_at = -math.inf


async def _check_version(now: float) -> None:
    if now - _snapshot.checked_at < RECHECK_S:
        return
    _snapshot.checked_at = now
    version = await cache_run(cache.get, VERSION_KEY, 0)
    if version != _snapshot.version:
        _snapshot.version = version
        _snapshot.loaded_at = -math.inf


async def key_lookup(prefix: str) -> KeyInfo | None:
    """The key with this prefix, or None; from memory unless the snapshot must be reloaded."""
    now = time.monotonic()
    await _check_version(now)
    age = now - _snapshot.loaded_at
    info = _snapshot.keys.get(prefix)
    if age < MAX_AGE_S and (info is not None or age < MISS_RELOAD_S):
        return info
    await sync_to_async(_reload, thread_sensitive=False)(now)
    return _snapshot.keys.get(prefix)
