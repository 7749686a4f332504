"""Gateway keys: issue, revoke, and verify on the request path without touching the database.

Verification finds the key's prefix in this process's memory (gateway.services.key_cache)
and compares the SHA-256 of the presented key in constant time. ``last_used_at`` is written
at most once a minute per key and process, off the request path.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import secrets
import string
import time
from collections.abc import Iterable
from decimal import Decimal

from django.db import IntegrityError, close_old_connections, transaction
from django.utils import timezone

from gateway.models import KEY_PREFIX, PREFIX_LENGTH, GatewayKey
from gateway.services.key_cache import KeyInfo, key_lookup
from providers.models import FallbackChain
from rana_site.db_busy import retry_when_busy

log = logging.getLogger("rana.gateway")

_ALPHABET = string.ascii_letters + string.digits
_SECRET_LENGTH = 40
KEY_LENGTH = len(KEY_PREFIX) + _SECRET_LENGTH
TOUCH_EVERY_S = 60.0


class KeyRejected(Exception):
    """No usable key: `reason` is missing, malformed, unknown, revoked or expired."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _new_key() -> str:
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LENGTH))


def gateway_key_issue(key: GatewayKey) -> str:
    """Give an unsaved key its secret: sets prefix and hash, returns the plaintext (shown once)."""
    plaintext = _new_key()
    key.prefix = plaintext[:PREFIX_LENGTH]
    key.key_hash = key_hash(plaintext)
    return plaintext


def gateway_key_create(
    *,
    name: str,
    chains: Iterable[FallbackChain] = (),
    rpm_limit: int | None = None,
    daily_budget_usd: Decimal | None = None,
    monthly_budget_usd: Decimal | None = None,
    expires_at: dt.datetime | None = None,
    created_by=None,
) -> tuple[GatewayKey, str]:
    """Make a key; returns it and its plaintext, which is never stored or shown again."""
    chains = list(chains)
    for _ in range(5):  # a prefix collision is astronomically rare; retry with a new key
        key = GatewayKey(
            name=name,
            rpm_limit=rpm_limit,
            daily_budget_usd=daily_budget_usd,
            monthly_budget_usd=monthly_budget_usd,
            expires_at=expires_at,
            created_by=created_by,
        )
        plaintext = gateway_key_issue(key)
        try:
            with transaction.atomic():
                key.save()
                key.allowed_chains.set(chains)
        except IntegrityError:
            continue
        return key, plaintext
    raise RuntimeError("could not find a free key prefix")  # pragma: no cover


def gateway_key_revoke(*, prefix: str) -> GatewayKey:
    """Revoke the key with this prefix (raises GatewayKey.DoesNotExist). Idempotent."""
    key = GatewayKey.objects.get(prefix=prefix)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


# --- verification ---------------------------------------------------------------------------

_touched: dict[int, float] = {}


def key_from_authorization(header: str | None) -> str:
    """The key in an `Authorization: Bearer ...` header; raises KeyRejected."""
    if not header:
        raise KeyRejected("missing", "No API key: send your RANA key as 'Authorization: Bearer rana_...'.")
    scheme, _, key = header.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key.startswith(KEY_PREFIX) or len(key) != KEY_LENGTH:
        raise KeyRejected("malformed", "Incorrect API key: RANA keys look like 'rana_' + 40 characters.")
    return key


async def gateway_key_verify(*, key: str, now: float | None = None) -> KeyInfo:
    """The key's info, or KeyRejected (never says whether a prefix exists)."""
    info = await key_lookup(key[:PREFIX_LENGTH])
    if info is None or not hmac.compare_digest(key_hash(key), info.key_hash):
        raise KeyRejected("unknown", "Incorrect API key provided.")
    if info.revoked:
        raise KeyRejected("revoked", "This API key has been revoked.")
    wall = time.time() if now is None else now
    if info.expires_at is not None and info.expires_at <= wall:
        raise KeyRejected("expired", "This API key has expired.")
    _touch(info.id, wall)
    return info


def _touch(key_id: int, wall: float) -> None:
    last = _touched.get(key_id)
    if last is not None and wall - last < TOUCH_EVERY_S:
        return
    _touched[key_id] = wall
    try:
        asyncio.get_running_loop().run_in_executor(None, _write_last_used, key_id, wall)
    except RuntimeError:  # no running loop: write now
        _write_last_used(key_id, wall)


def _write_last_used(key_id: int, wall: float) -> None:
    """Best effort, on an executor thread: a few tries when the database is busy."""
    when = dt.datetime.fromtimestamp(wall, tz=dt.UTC)

    def write() -> None:
        close_old_connections()
        GatewayKey.objects.filter(pk=key_id).update(last_used_at=when)

    try:
        retry_when_busy(write, tries=3)
    except Exception:
        log.exception("could not record the last use of gateway key %s", key_id)
