"""The offline demo: simulated providers with injected faults, two chains, prices, an admin."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction

from providers.models import FallbackChain

from .capabilities import capabilities_load
from .config_io import ImportReport, config_import
from .prices import PriceLoadReport, prices_load

DEMO_CONFIG_PATH = Path(__file__).resolve().parent.parent / "data" / "demo.yaml"
DEMO_CHAIN_SLUG = "demo"


@dataclass(frozen=True, slots=True)
class DemoReport:
    config: ImportReport | None  # None: the demo chain existed and --force was not given
    prices: PriceLoadReport


@transaction.atomic
def demo_setup(*, force: bool = False) -> DemoReport:
    """Create (or with force, reset) the demo providers and chains, and load the prices.

    Idempotent: without `force` nothing is touched once the demo chain exists; with it,
    the demo rows are put back to the shipped configuration. Other rows are left alone,
    except that the demo chain becomes the default chain.
    """
    config = None
    if force or not FallbackChain.objects.filter(slug=DEMO_CHAIN_SLUG).exists():
        config = config_import(
            text=DEMO_CONFIG_PATH.read_text(encoding="utf-8"), filename=DEMO_CONFIG_PATH.name
        )
    capabilities_load()
    return DemoReport(config=config, prices=prices_load())


def demo_admin_ensure(*, username: str = "admin") -> str | None:
    """Create a superuser with a generated password and return it; None if the user exists.

    An existing user's password is never changed.
    """
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        return None
    password = secrets.token_urlsafe(18)
    user_model.objects.create_superuser(username=username, email="", password=password)
    return password
