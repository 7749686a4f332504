"""Seed a fresh RANA database for a live gateway (tests and bench): chains on a fake upstream.

    python -m tests.gateway.seed http://127.0.0.1:PORT   (with DATABASE_URL set)

prints {"keys": {name: plaintext}} as JSON. Chains, all openai_compatible on the fake:
- main (default): "primary", then "backup" (fallback one step)
- fallback: "broken" (always answers 503 unless scripted), then "backup"
- solo: "solo" only; other: "other" only (keys limited to main may not use it)
- slow: "hang" only, with a 1 s deadline (504)
- tools: "tooler" only (bench/stream_overhead.py: the fake's --tool-model answers tool calls)
Keys: full (every chain), limited (main only), rpm (2 per minute), budget (daily $0),
revoked, expired.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from decimal import Decimal


def _chain(slug: str, models: list[str], provider, **options):
    from providers.models import ChainStep, FallbackChain

    chain = FallbackChain.objects.create(name=slug.title(), slug=slug, default_retries=0, **options)
    for position, model in enumerate(models):
        ChainStep.objects.create(chain=chain, position=position, provider=provider, model=model)
    return chain


def seed(upstream_url: str) -> dict[str, str]:
    from django.utils import timezone

    from gateway.services.keys import gateway_key_create
    from providers.models import ModelPrice, Provider

    provider = Provider(name="fake", kind="openai_compatible", base_url=upstream_url.rstrip("/") + "/v1")
    provider.set_api_key("sk-local-LIVEKEY0123456789abcdef")
    provider.save()
    for model in ("primary", "backup", "broken", "solo"):
        ModelPrice.objects.create(
            provider_kind="openai_compatible",
            model=model,
            input_per_mtok=Decimal("1"),
            output_per_mtok=Decimal("2"),
            effective_from=dt.date(2025, 1, 1),
        )
    main = _chain("main", ["primary", "backup"], provider, is_default=True)
    _chain("fallback", ["broken", "backup"], provider)
    _chain("solo", ["solo"], provider)
    _chain("other", ["other"], provider)
    _chain("slow", ["hang"], provider, deadline_s=1.0, step_timeout_s=5.0)
    _chain("tools", ["tooler"], provider)
    past = timezone.now() - dt.timedelta(days=1)
    specs = {
        "full": {},
        "limited": {"chains": [main]},
        "rpm": {"rpm_limit": 2},
        "budget": {"daily_budget_usd": Decimal("0")},
        "revoked": {},
        "expired": {"expires_at": past},
    }
    keys = {name: gateway_key_create(name=name, **spec)[1] for name, spec in specs.items()}
    from gateway.services.keys import gateway_key_revoke

    gateway_key_revoke(prefix=keys["revoked"][:13])
    return keys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rana_site.settings")
    import django

    django.setup()
    json.dump({"keys": seed(sys.argv[1])}, sys.stdout)


if __name__ == "__main__":
    main()
