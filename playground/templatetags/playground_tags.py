"""Formatting for the attempt timeline: money, milliseconds, outcome classes, and what an
attempt that was skipped or whose answer was refused means, in words."""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django import template

from playground.snippets import run_snippets
from playground.words import CANNOT_SERVE, needs_named
from providers.services import redact

register = template.Library()

FAILURE_TONES = {
    "success": "ok",
    "cache_hit": "ok",
    "circuit_open": "skip",
    "capability_skipped": "skip",
    "cancelled": "skip",
    "budget_blocked": "warn",
    "rate_limited": "warn",
    "quota_exhausted": "warn",
    "running": "skip",
}


@register.filter
def usd(value: Decimal | None, unpriced: bool = False) -> str:
    """Dollars with enough decimals to see a fraction of a cent; "unpriced", never a false $0."""
    if unpriced:
        return "unpriced"
    if value is None:
        return "—"
    value = Decimal(value)
    if value == 0:
        return "$0"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    places = 6 if abs(value) >= Decimal("0.0001") else 10
    return "$" + f"{value:.{places}f}".rstrip("0")


@register.filter
def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


@register.filter
def tone(outcome: str) -> str:
    """The colour family of an outcome: ok, warn, skip or bad."""
    return FAILURE_TONES.get(outcome or "", "bad")


@register.filter
def step_label(position: int | None) -> str:
    return "—" if position is None else f"step {position + 1}"


@register.filter
def masked(text: str) -> str:
    """Error text with anything shaped like a key masked (adapters mask theirs already)."""
    return redact(text or "")


_SCHEMA = re.compile(r"^the answer breaks the response schema at (?P<where>.+?): (?P<what>.+)$", re.S)


def _then(attempt: Any, following: Any | None) -> str:
    """What the chain did after a failed attempt: retried the step, fell back, or stopped."""
    if following is None:
        return "no step was left to try"
    if following.step_position == attempt.step_position:
        return "retried"
    return f"fell back to step {following.step_position + 1}"


def attempt_words(attempt: Any, following: Any | None = None) -> str:
    """An attempt that was skipped, or whose answer was refused, said in words ("" otherwise)."""
    message = (attempt.error_message or "").strip()
    if attempt.outcome == "capability_skipped":
        match = CANNOT_SERVE.match(message)
        if match is None:
            return f"skipped: {message}" if message else "skipped: this step cannot serve the request"
        why = match["why"]
        if why.endswith("(capability table)"):
            why = "per the capability table"
        needs = " and ".join(needs_named(match["needs"]))
        return f"skipped: model {attempt.model} cannot serve {needs} ({why})"
    if attempt.outcome == "circuit_open":
        return (
            f"skipped: the circuit for {attempt.provider_name} / {attempt.model} is open (it failed recently)"
        )
    if attempt.outcome == "bad_response" and message:
        match = _SCHEMA.match(message)
        if match is not None:
            where = match["where"]
            where = "the root" if where == "(the root)" else "/" + where
            return f"answer broke the JSON schema at {where}: {match['what']} — {_then(attempt, following)}"
        return f"bad answer: {message} — {_then(attempt, following)}"
    return ""


@register.filter
def with_words(attempts: Sequence[Any]) -> list[tuple[Any, str]]:
    """Each attempt with its words (see attempt_words), knowing which attempt came next."""
    attempts = list(attempts or [])
    following = [*attempts[1:], None]
    return [(a, redact(attempt_words(a, nxt))) for a, nxt in zip(attempts, following, strict=True)]


@register.simple_tag(takes_context=True)
def run_code(context: dict, run: Any) -> dict[str, str]:
    """The run as a curl command and an OpenAI SDK call against this server's /v1."""
    request = context.get("request")
    base_url = request.build_absolute_uri("/v1") if request is not None else "http://127.0.0.1:8000/v1"
    return run_snippets(
        base_url=base_url,
        chain_slug=run.chain_slug,
        messages=run.messages,
        params=run.params,
        stream=run.stream,
    )
