"""Provider keys at rest: MultiFernet encryption, and log redaction (providers.redaction).

Encrypt with the newest key in RANA_ENCRYPTION_KEYS; decrypt with any of them, so a
new key can be put first and old rows still read until `rana_rotate_keys` re-encrypts them.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from providers.redaction import mask, redact

__all__ = [
    "KeyDecryptionError",
    "RedactingFilter",
    "decrypt",
    "encrypt",
    "fernet",
    "mask",
    "redact",
    "rotate",
]


class KeyDecryptionError(Exception):
    """A stored key cannot be decrypted with any configured encryption key."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "RANA_ENCRYPTION_KEYS holds a value that is not a Fernet key "
            "(generate one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())')"
        ) from exc


def fernet() -> MultiFernet:
    keys = tuple(settings.RANA_ENCRYPTION_KEYS)
    if not keys:
        raise ImproperlyConfigured("RANA_ENCRYPTION_KEYS is empty.")
    return _fernet(keys)


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise KeyDecryptionError(
            "a stored provider key cannot be decrypted: is its encryption key "
            "still listed in RANA_ENCRYPTION_KEYS?"
        ) from exc


def rotate(ciphertext: str) -> str:
    """Re-encrypt under the newest key (no-op in meaning, new bytes)."""
    try:
        return fernet().rotate(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise KeyDecryptionError("a stored provider key cannot be decrypted") from exc


class RedactingFilter(logging.Filter):
    """Logging filter: key-shaped strings never reach a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the logger's problem, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
