"""Failures in words: the needs a step could not serve, and when a cooling-down chain can retry."""

from __future__ import annotations

import re
from collections.abc import Iterable

from providers.types import RetryLater

NEED_WORDS = {
    "images": "images",
    "tools": "tool calls",
    "parallel_tools": "parallel tool calls",
    "json_object": "JSON mode",
    "json_schema": "a JSON schema answer",
    "reasoning": "reasoning",
}
CANNOT_SERVE = re.compile(r"^cannot serve (?P<needs>[\w ]+?): (?P<why>.+)$", re.S)


def needs_named(text: str) -> list[str]:
    """The needs in "images and json_schema", each in words."""
    return [NEED_WORDS.get(name.strip(), name.strip()) for name in text.split(" and ") if name.strip()]


def needs_unserved(messages: Iterable[str]) -> list[str]:
    """Every need named by capability-skip messages ("cannot serve X: ..."), in words, once."""
    found: dict[str, None] = {}
    for message in messages:
        match = CANNOT_SERVE.match((message or "").strip())
        if match is not None:
            found.update(dict.fromkeys(needs_named(match["needs"])))
    return list(found)


def retry_later_words(later: RetryLater) -> str:
    """Every step is rate-limited or behind an open circuit: which, and when to try again."""
    if later.reason == "rate_limited":
        return f"Every provider is rate-limited; try again in {later.whole_seconds} s"
    return f"Every provider's circuit is open; next try in {later.whole_seconds} s"
