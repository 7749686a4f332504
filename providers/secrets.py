"""Provider keys at rest: MultiFernet encryption, masking, and log redaction.

Encrypt with the newest key in RANA_ENCRYPTION_KEYS; decrypt with any of them, so a
new key can be put first and old rows still read until `rana_rotate_keys` re-encrypts them.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# Shapes of provider and gateway keys, so a key that slips into a log line is still hidden.
_KEY_PATTERNS = re.compile(
    r"(sk-ant-[A-Za-z0-9_\-]{8,}|sk-[A-Za-z0-9_\-]{16,}|AIza[0-9A-Za-z_\-]{20,}"
    r"|rana_[A-Za-z0-9_\-]{16,}|(?i:bearer)\s+[A-Za-z0-9._\-]{12,})"
)


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


def mask(secret: str) -> str:
    """Show only the last four characters: '••••abcd'."""
    if not secret:
        return ""
    return "••••" + secret[-4:] if len(secret) > 8 else "••••"


def redact(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """Replace the given secrets, and anything shaped like a key, with its mask."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, mask(secret))
    return _KEY_PATTERNS.sub(lambda m: mask(m.group(0)), text)


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
