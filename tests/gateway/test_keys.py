"""Gateway keys: shown once, stored as a hash, verified from memory, revoked at once."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import OperationalError

from gateway.models import GatewayKey
from gateway.services import key_cache
from gateway.services import keys as key_service
from gateway.services.keys import KeyRejected, gateway_key_create, gateway_key_revoke, gateway_key_verify
from providers.models import FallbackChain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def loads(monkeypatch) -> list[int]:
    """How often verification loaded the keys from the database."""
    seen: list[int] = []
    real = key_cache.keys_load_all

    def counting():
        seen.append(1)
        return real()

    monkeypatch.setattr(key_cache, "keys_load_all", counting)
    return seen


def test_a_key_is_random_prefixed_and_stored_only_as_a_hash():
    key, plaintext = gateway_key_create(name="bot")
    assert plaintext.startswith("rana_") and len(plaintext) == 45
    assert key.prefix == plaintext[:13]
    assert key.key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    stored = GatewayKey.objects.values().get(pk=key.pk)
    assert plaintext not in {str(v) for v in stored.values()}
    assert gateway_key_create(name="bot")[1] != plaintext


async def test_verification_reads_the_database_once_then_memory(loads):
    _, plaintext = await sync_to_async(gateway_key_create)(name="bot")
    for _ in range(3):
        info = await gateway_key_verify(key=plaintext)
    assert info.name == "bot" and len(loads) == 1


async def test_revoking_takes_effect_at_once_in_this_process(loads):
    _, plaintext = await sync_to_async(gateway_key_create)(name="bot")
    await gateway_key_verify(key=plaintext)
    await sync_to_async(gateway_key_revoke)(prefix=plaintext[:13])
    with pytest.raises(KeyRejected) as info:
        await gateway_key_verify(key=plaintext)
    assert info.value.reason == "revoked"


async def revoked_elsewhere(plaintext: str) -> None:
    """Another process revoked the key: the row changed, this process's memory did not."""
    await GatewayKey.objects.filter(prefix=plaintext[:13]).aupdate(revoked_at="2026-01-01T00:00:00Z")


async def test_other_processes_notice_a_change_within_the_recheck_interval(loads, monkeypatch):
    _, plaintext = await sync_to_async(gateway_key_create)(name="bot")
    await gateway_key_verify(key=plaintext)
    await revoked_elsewhere(plaintext)
    key_cache.keys_changed()  # what the other process's save did to the shared cache ...
    key_cache._snapshot.loaded_at = time.monotonic()  # ... while this memory stayed as it was
    await gateway_key_verify(key=plaintext)  # still remembered within RECHECK_S
    monkeypatch.setattr(key_cache, "RECHECK_S", 0.0)
    with pytest.raises(KeyRejected):
        await gateway_key_verify(key=plaintext)


async def test_a_change_is_noticed_even_after_the_shared_cache_was_emptied(loads, monkeypatch):
    """A Redis restart empties the version: the next change must still differ from what this
    process saw last (a counter would start again at the number it saw)."""
    monkeypatch.setattr(key_cache, "RECHECK_S", 0.0)
    cache.clear()
    _, second = await sync_to_async(gateway_key_create)(name="two")  # a counter would say 1
    await gateway_key_verify(key=second)  # this process has seen the current version
    cache.clear()  # the shared cache restarts
    await revoked_elsewhere(second)
    key_cache.keys_changed()  # the other process's save (a counter would say 1 again) ...
    key_cache._snapshot.loaded_at = time.monotonic()  # ... this process's memory unchanged
    with pytest.raises(KeyRejected):
        await gateway_key_verify(key=second)


async def test_without_a_shared_cache_a_revocation_still_arrives_within_max_age(loads, monkeypatch):
    _, plaintext = await sync_to_async(gateway_key_create)(name="bot")
    await gateway_key_verify(key=plaintext)
    await revoked_elsewhere(plaintext)
    await gateway_key_verify(key=plaintext)
    monkeypatch.setattr(key_cache, "MAX_AGE_S", 0.0)
    with pytest.raises(KeyRejected):
        await gateway_key_verify(key=plaintext)


async def test_made_up_keys_cost_at_most_one_query_per_interval(loads):
    _, plaintext = await sync_to_async(gateway_key_create)(name="bot")
    await gateway_key_verify(key=plaintext)
    for n in range(50):
        with pytest.raises(KeyRejected):
            await gateway_key_verify(key=f"rana_UNKNOWN{n:02d}" + "x" * 30)
    assert len(loads) == 1


async def test_a_key_made_by_another_process_works_within_the_miss_interval(loads, monkeypatch):
    _, known = await sync_to_async(gateway_key_create)(name="bot")
    await gateway_key_verify(key=known)
    fresh = GatewayKey(name="elsewhere")
    plaintext = key_service.gateway_key_issue(fresh)
    await GatewayKey.objects.abulk_create([fresh])  # no signals: as if another process saved it
    with pytest.raises(KeyRejected):
        await gateway_key_verify(key=plaintext)
    monkeypatch.setattr(key_cache, "MISS_RELOAD_S", 0.0)
    assert (await gateway_key_verify(key=plaintext)).name == "elsewhere"


async def test_last_use_is_written_at_most_once_a_minute():
    key, plaintext = await sync_to_async(gateway_key_create)(name="bot")
    now = time.time()
    await gateway_key_verify(key=plaintext, now=now)
    await poll_last_used(key)
    await GatewayKey.objects.filter(pk=key.pk).aupdate(last_used_at=None)
    await gateway_key_verify(key=plaintext, now=now + 30)  # schedules no write at all
    assert key.pk not in {k for k, t in key_service._touched.items() if t == now + 30}
    await gateway_key_verify(key=plaintext, now=now + 61)
    await poll_last_used(key)


async def poll_last_used(key: GatewayKey, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while (await GatewayKey.objects.aget(pk=key.pk)).last_used_at is None:
        assert time.monotonic() < deadline, "last_used_at was never written"
        await asyncio.sleep(0.01)


def test_deleting_the_only_allowed_chain_revokes_the_key_instead_of_widening_it(db):
    only = FallbackChain.objects.create(name="Only", slug="only")
    keep = FallbackChain.objects.create(name="Keep", slug="keep")
    narrow, _ = gateway_key_create(name="narrow", chains=[only])
    wide, _ = gateway_key_create(name="two", chains=[only, keep])
    only.delete()
    narrow.refresh_from_db()
    wide.refresh_from_db()
    assert narrow.is_revoked and not wide.is_revoked
    assert list(wide.allowed_chains.values_list("slug", flat=True)) == ["keep"]


def test_rana_keys_create_list_revoke(db):
    FallbackChain.objects.create(name="Main", slug="main")
    out, err = io.StringIO(), io.StringIO()
    call_command("rana_keys", "create", "ci-bot", "--chain", "main", "--rpm", "60", stdout=out, stderr=err)
    plaintext = out.getvalue().strip()
    assert plaintext.startswith("rana_") and "shown only once" in err.getvalue()
    key = GatewayKey.objects.get(prefix=plaintext[:13])
    assert key.rpm_limit == 60 and [c.slug for c in key.allowed_chains.all()] == ["main"]
    listing = io.StringIO()
    call_command("rana_keys", "list", stdout=listing)
    assert key.prefix in listing.getvalue() and "active" in listing.getvalue()
    assert plaintext not in listing.getvalue()
    call_command("rana_keys", "revoke", key.prefix, stdout=io.StringIO())
    key.refresh_from_db()
    assert key.is_revoked
    with pytest.raises(CommandError):
        call_command("rana_keys", "revoke", "rana_nope")
    with pytest.raises(CommandError):
        call_command("rana_keys", "create", "x", "--chain", "missing")


async def test_known_keys_keep_working_while_the_database_is_unreachable(monkeypatch):
    _, plaintext = await sync_to_async(gateway_key_create)(name="bot")
    await gateway_key_verify(key=plaintext)

    def broken():
        raise OperationalError("the database is down")

    monkeypatch.setattr(key_cache, "keys_load_all", broken)
    monkeypatch.setattr(key_cache, "MAX_AGE_S", 0.0)
    assert (await gateway_key_verify(key=plaintext)).name == "bot"
