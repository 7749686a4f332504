"""What the filter bar offers: chains, providers and models known to the site or the ledger."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from dashboards.models import AttemptRollup, Grain, ProviderStatus
from providers.models import ChainStep, FallbackChain, Provider

_MODELS_SEEN_DAYS = 90


@dataclass(frozen=True)
class FilterOptions:
    chains: list[tuple[int, str, str]]  # (id, slug, name)
    providers: list[str]
    models: list[str]


def filter_options() -> FilterOptions:
    chains = list(FallbackChain.objects.order_by("name").values_list("id", "slug", "name"))
    providers = set(Provider.objects.values_list("name", flat=True))
    providers |= set(ProviderStatus.objects.values_list("provider_name", flat=True))
    models = set(ChainStep.objects.values_list("model", flat=True))
    since = timezone.now() - dt.timedelta(days=_MODELS_SEEN_DAYS)
    seen = AttemptRollup.objects.filter(grain=Grain.DAY, bucket__gte=since).order_by()
    models |= set(seen.values_list("model", flat=True).distinct())
    return FilterOptions(chains=chains, providers=sorted(providers), models=sorted(models))
