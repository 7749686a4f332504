"""Chains for the request path: resolved and flattened once, cached per process.

Plans hold decrypted keys, so they live only in this process's memory (never in a shared
cache). A save of any provider, chain, step or price bumps a config version: the saving
process drops its plans at once, other processes within RANA_CONFIG_RECHECK_S.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

from django.core.cache import cache
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from providers.engine.plan import ChainPlan
from providers.models import ChainStep, FallbackChain, ModelCapability, ModelPrice, Provider
from providers.services.breaker_policy import DEFAULT_POLICY, BreakerPolicy, breaker_policy
from providers.services.plans import chain_plan_build
from rana_site.cache_io import cache_run

_VERSION_KEY = "rana:config-version"
RECHECK_S = 1.0


class ChainNotFound(LookupError):
    def __init__(self, slug: str | None) -> None:
        self.slug = slug
        super().__init__(
            f"no chain named '{slug}'" if slug else "no default chain is configured (mark one as default)"
        )


class NoUsableStep(LookupError):
    """The chain has no step to try: every step is disabled, or its provider is (or it has none)."""

    def __init__(self, slug: str) -> None:
        self.slug = slug
        super().__init__(
            f"chain '{slug}' has no usable step: every step is disabled or its provider is disabled"
        )


@dataclass(frozen=True, slots=True)
class LoadedChain:
    chain_id: int
    slug: str
    plan: ChainPlan
    cache_ttl_s: int | None
    daily_budget_usd: object
    monthly_budget_usd: object
    updated_at: float
    breaker: BreakerPolicy = DEFAULT_POLICY  # the settings with the chain's overrides
    body_logging: str = "off"  # BodyLogging: whether requests keep their messages and answer
    body_log_chars: int = 0  # with "first_chars": how many


_lock = threading.Lock()
_plans: dict[str, LoadedChain] = {}
_state = {"version": None, "checked_at": 0.0}


def _version_due() -> bool:
    return time.monotonic() - _state["checked_at"] >= RECHECK_S


def _version_seen(shared: int) -> None:
    # Plans carry the prices in effect today: a new day reloads them too.
    version = (shared, timezone.localdate())
    _state["checked_at"] = time.monotonic()
    if version != _state["version"]:
        with _lock:
            _plans.clear()
            _state["version"] = version


def _current_version() -> None:
    """Sync callers (on a worker thread): reread the shared version when it is due."""
    if _version_due():
        _version_seen(cache.get(_VERSION_KEY, 0))


def config_changed(**_kwargs) -> None:
    # A fresh token, not a counter: a counter restarts at 1 when the cache is emptied, and a
    # process that last saw the same number would miss this change.
    cache.set(_VERSION_KEY, uuid.uuid4().hex, timeout=None)
    with _lock:
        _plans.clear()
        _state["checked_at"] = 0.0


def _load(slug: str | None) -> LoadedChain:
    qs = FallbackChain.objects.all()
    chain = qs.filter(slug=slug).first() if slug else qs.filter(is_default=True).first()
    if chain is None:
        raise ChainNotFound(slug)
    return LoadedChain(
        chain_id=chain.pk,
        slug=chain.slug,
        plan=chain_plan_build(chain=chain),
        cache_ttl_s=chain.cache_ttl_s,
        daily_budget_usd=chain.daily_budget_usd,
        monthly_budget_usd=chain.monthly_budget_usd,
        updated_at=chain.updated_at.timestamp(),
        breaker=breaker_policy(chain),
        body_logging=chain.body_logging,
        body_log_chars=chain.body_log_chars,
    )


def chain_load(slug: str | None) -> LoadedChain:
    """The chain named `slug` (None: the default chain). Sync: call off the event loop on a miss."""
    _current_version()
    key = slug or ""
    loaded = _plans.get(key)
    if loaded is None:
        loaded = _load(slug)
        with _lock:
            _plans[key] = loaded
    return loaded


async def achain_cached(slug: str | None) -> LoadedChain | None:
    """The cached chain, or None when it must be loaded from the database. The shared
    configuration version is read at most once a second, off the event loop with Redis."""
    if _version_due():
        _version_seen(await cache_run(cache.get, _VERSION_KEY, 0))
    return _plans.get(slug or "")


for _model in (FallbackChain, ChainStep, Provider, ModelPrice, ModelCapability):
    post_save.connect(config_changed, sender=_model, dispatch_uid=f"rana-config-{_model.__name__}-save")
    post_delete.connect(config_changed, sender=_model, dispatch_uid=f"rana-config-{_model.__name__}-del")
