"""Gateway keys for automation: create (prints the key once), list, revoke."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from gateway.models import GatewayKey
from gateway.services.keys import gateway_key_create, gateway_key_revoke
from providers.models import FallbackChain


def _usd(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise CommandError(f"'{value}' is not an amount in USD") from None
    if amount < 0:
        raise CommandError("budgets cannot be negative")
    return amount


class Command(BaseCommand):
    help = "Create, list and revoke gateway keys for RANA's OpenAI-compatible API."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="make a key and print it once")
        create.add_argument("name")
        create.add_argument("--chain", action="append", default=[], metavar="SLUG", help="repeatable")
        create.add_argument("--rpm", type=int, default=None, help="requests per minute")
        create.add_argument("--daily-usd", type=_usd, default=None)
        create.add_argument("--monthly-usd", type=_usd, default=None)
        create.add_argument("--expires-days", type=int, default=None)
        sub.add_parser("list", help="every key: prefix, status, chains, limits")
        revoke = sub.add_parser("revoke", help="revoke the key with this prefix")
        revoke.add_argument("prefix")

    def handle(self, *args, action: str, **options) -> None:
        getattr(self, f"_{action}")(**options)

    def _create(self, *, name: str, chain: list[str], rpm, daily_usd, monthly_usd, expires_days, **_) -> None:
        chains = list(FallbackChain.objects.filter(slug__in=chain))
        missing = sorted(set(chain) - {c.slug for c in chains})
        if missing:
            raise CommandError(f"no chain named: {', '.join(missing)}")
        expires = timezone.now() + dt.timedelta(days=expires_days) if expires_days else None
        key, plaintext = gateway_key_create(
            name=name,
            chains=chains,
            rpm_limit=rpm,
            daily_budget_usd=daily_usd,
            monthly_budget_usd=monthly_usd,
            expires_at=expires,
        )
        self.stdout.write(plaintext)
        self.stderr.write(f"created {key.prefix} ({name}); the key above is shown only once")

    def _list(self, **_) -> None:
        keys = GatewayKey.objects.prefetch_related("allowed_chains").order_by("created_at")
        for key in keys:
            chains = ",".join(c.slug for c in key.allowed_chains.all()) or "all"
            used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
            limits = f"rpm={key.rpm_limit or '-'} daily={key.daily_budget_usd or '-'} "
            limits += f"monthly={key.monthly_budget_usd or '-'}"
            self.stdout.write(
                f"{key.prefix}\t{key.status}\t{key.name}\tchains={chains}\t{limits}\tused={used}"
            )

    def _revoke(self, *, prefix: str, **_) -> None:
        try:
            key = gateway_key_revoke(prefix=prefix)
        except GatewayKey.DoesNotExist:
            raise CommandError(f"no key with prefix '{prefix}'") from None
        self.stdout.write(f"revoked {key.prefix} ({key.name})")
