"""Provider keys at rest: re-encrypt under the newest RANA_ENCRYPTION_KEYS entry."""

from __future__ import annotations

import logging

from django.db import transaction

from providers import secrets
from providers.models import Provider

log = logging.getLogger(__name__)


@transaction.atomic
def provider_keys_rotate() -> int:
    """Re-encrypt every stored provider key with the first (newest) encryption key.

    All or nothing: if one key cannot be decrypted with any configured key, nothing is
    rewritten and KeyDecryptionError names the provider. Returns how many keys were
    re-encrypted; afterwards the older encryption keys can be dropped from the setting.
    """
    count = 0
    for provider in Provider.objects.select_for_update().exclude(api_key_ciphertext="").order_by("pk"):
        try:
            provider.api_key_ciphertext = secrets.rotate(provider.api_key_ciphertext)
        except secrets.KeyDecryptionError as exc:
            raise secrets.KeyDecryptionError(
                f"provider '{provider.name}': its key cannot be decrypted with any key in "
                "RANA_ENCRYPTION_KEYS; nothing was re-encrypted"
            ) from exc
        provider.save(update_fields=["api_key_ciphertext"])
        count += 1
    log.info("re-encrypted %d provider keys under the newest encryption key", count)
    return count
