"""python manage.py rana_rotate_keys: re-encrypt provider keys under the newest key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from providers.secrets import KeyDecryptionError
from providers.services.keys import provider_keys_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored provider key with the first key in RANA_ENCRYPTION_KEYS "
        "(put a new key first, run this, then drop the old key)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = provider_keys_rotate()
        except KeyDecryptionError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} provider key(s) under the newest key."))
