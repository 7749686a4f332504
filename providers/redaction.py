"""Masking secrets in text: plain functions, no Django (the adapters use them too)."""

from __future__ import annotations

import re

# Shapes of provider and gateway keys, so a key that slips into a log line is still hidden.
_KEY_PATTERNS = re.compile(
    r"(sk-ant-[A-Za-z0-9_\-]{8,}|sk-[A-Za-z0-9_\-]{16,}|AIza[0-9A-Za-z_\-]{20,}"
    r"|rana_[A-Za-z0-9_\-]{16,}|(?i:bearer)\s+[A-Za-z0-9._\-]{12,})"
)


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
