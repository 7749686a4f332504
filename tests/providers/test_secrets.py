"""Provider keys at rest: rotation under a new encryption key, and keys kept out of logs."""

from __future__ import annotations

import io
import logging

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from providers.models import Provider, ProviderKind
from providers.secrets import KeyDecryptionError, RedactingFilter
from tests.providers import conftest_admin

# Shared fixtures, bound here so pytest finds them for this module.
fernet_keys = conftest_admin.fernet_keys
provider_key = conftest_admin.provider_key

pytestmark = pytest.mark.django_db


def make_provider(name: str, key: str) -> Provider:
    provider = Provider(name=name, kind=ProviderKind.OPENAI)
    provider.set_api_key(key)
    provider.save()
    return provider


def raw_ciphertext(pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key_ciphertext FROM providers_provider WHERE id = %s", [pk])
        return cursor.fetchone()[0]


@pytest.fixture
def old_rows(fernet_keys, provider_key) -> list[Provider]:
    """Two providers whose keys were encrypted under the old encryption key."""
    old, _ = fernet_keys
    with override_settings(RANA_ENCRYPTION_KEYS=[old]):
        return [make_provider("one", provider_key), make_provider("two", provider_key + "-2")]


def test_rows_under_the_old_key_still_decrypt_when_a_new_key_comes_first(old_rows, fernet_keys, provider_key):
    old, new = fernet_keys
    with override_settings(RANA_ENCRYPTION_KEYS=[new, old]):
        assert Provider.objects.get(name="one").get_api_key() == provider_key
    with override_settings(RANA_ENCRYPTION_KEYS=[new]), pytest.raises(KeyDecryptionError):
        Provider.objects.get(name="one").get_api_key()


def test_rotate_command_reencrypts_under_the_new_key(old_rows, fernet_keys, provider_key):
    old, new = fernet_keys
    before = {p.pk: raw_ciphertext(p.pk) for p in old_rows}
    Provider.objects.create(name="keyless", kind=ProviderKind.SIMULATED)
    out = io.StringIO()
    with override_settings(RANA_ENCRYPTION_KEYS=[new, old]):
        call_command("rana_rotate_keys", stdout=out)
    assert "Re-encrypted 2 provider key(s)" in out.getvalue()
    with override_settings(RANA_ENCRYPTION_KEYS=[new]):
        assert Provider.objects.get(name="one").get_api_key() == provider_key
        assert Provider.objects.get(name="two").get_api_key() == provider_key + "-2"
    for pk, ciphertext in before.items():
        assert raw_ciphertext(pk) != ciphertext
        assert provider_key not in raw_ciphertext(pk)


def test_rotation_is_all_or_nothing(old_rows, fernet_keys, provider_key):
    old, new = fernet_keys
    with override_settings(RANA_ENCRYPTION_KEYS=[new]):
        make_provider("lost", "sk-lost-0123456789abcdef")  # encrypted under a key dropped below
    before = {p.pk: raw_ciphertext(p.pk) for p in Provider.objects.all()}
    with override_settings(RANA_ENCRYPTION_KEYS=[old]), pytest.raises(CommandError, match="provider 'lost'"):
        call_command("rana_rotate_keys", stdout=io.StringIO())
    assert {p.pk: raw_ciphertext(p.pk) for p in Provider.objects.all()} == before


def test_settings_put_the_redacting_filter_on_the_log_handler():
    assert settings.LOGGING["filters"]["redact"]["()"] == "providers.secrets.RedactingFilter"
    assert "redact" in settings.LOGGING["handlers"]["console"]["filters"]
    root_filters = [f for h in logging.getLogger().handlers for f in h.filters]
    assert any(isinstance(f, RedactingFilter) for f in root_filters)


def test_logs_never_contain_a_stored_key(caplog, old_rows, fernet_keys, provider_key):
    old, new = fernet_keys
    configured = next(
        f for h in logging.getLogger().handlers for f in h.filters if isinstance(f, RedactingFilter)
    )
    caplog.handler.addFilter(configured)
    log = logging.getLogger("providers.adapters.test")
    with caplog.at_level(logging.DEBUG), override_settings(RANA_ENCRYPTION_KEYS=[new, old]):
        log.warning("upstream refused key %s", provider_key)
        log.error("401 from upstream: Authorization: Bearer %s", provider_key)
        call_command("rana_rotate_keys", stdout=io.StringIO())
    assert caplog.records, "nothing was logged"
    assert provider_key not in caplog.text
    assert "••••" + provider_key[-4:] in caplog.text
    assert any("re-encrypted 2 provider keys" in r.getMessage() for r in caplog.records)
