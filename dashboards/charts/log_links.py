"""Where a click on a chart goes: the request log (/requests/) filtered to that bar or point.

A chart's JSON carries "log": {"url", "points", "series"}: the log's URL with the dashboard's
filters (its time range as absolute start/end, chain, provider, model, source), then per
label the filters of that slot or category and per series those of the series (outcome,
fallback, provider, model). dashboards.js sets point's, then series', parameters on the URL.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.urls import reverse

from dashboards.selectors.filters import Filters
from providers.models import FallbackChain

Params = dict[str, str]


def _iso(moment) -> str:
    return moment.replace(microsecond=0).isoformat()


def log_base_url(f: Filters) -> str:
    params = {
        "start": _iso(f.start),
        "end": _iso(f.end),
        "chain": f.chain_slug,
        "provider": f.provider,
        "model": f.model,
        "source": f.source,
    }
    return f"{reverse('requests:list')}?{urlencode({k: v for k, v in params.items() if v})}"


def time_points(keys: list[str], f: Filters) -> list[Params]:
    """One slot per key (slot starts, ISO with offset): [start, the next slot's start)."""
    ends = [*keys[1:], _iso(f.end)]
    return [{"start": start, "end": end} for start, end in zip(keys, ends, strict=True)]


def chain_points(chain_ids: list[int | None]) -> list[Params]:
    slugs = dict(FallbackChain.objects.filter(id__in=[c for c in chain_ids if c]).values_list("id", "slug"))
    return [{"chain": slugs[c]} if c in slugs else {} for c in chain_ids]


def named(param: str, values: list[str], *, skip: tuple[str, ...] = ()) -> list[Params]:
    """One {param: value} per value; a value in `skip` (a catch-all like "Other") filters nothing."""
    return [{param: v} if v and v not in skip else {} for v in values]
