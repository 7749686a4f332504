"""The filter bar: parses the query string into Filters and renders itself."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import unquote

from django import forms
from django.http import HttpRequest
from django.utils import timezone

from dashboards.selectors.filters import (
    CUSTOM,
    DEFAULT_RANGE,
    RANGES,
    TZ_COOKIE,
    Filters,
    default_tz,
    resolve_range,
    tz_from,
)
from dashboards.selectors.options import FilterOptions, filter_options
from providers.models import Source


class FilterForm(forms.Form):
    range = forms.ChoiceField(
        choices=[*((k, label) for k, (label, _) in RANGES.items()), (CUSTOM, "Custom…")], required=False
    )
    start = forms.CharField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    end = forms.CharField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    chain = forms.ChoiceField(required=False)
    provider = forms.ChoiceField(required=False)
    model = forms.ChoiceField(required=False)
    source = forms.ChoiceField(required=False, choices=[("", "All sources"), *Source.choices])
    injected = forms.BooleanField(required=False, label="Include injected faults")

    def __init__(self, data: Any, *args: Any, options: FilterOptions, **kwargs: Any) -> None:
        super().__init__(data, *args, **kwargs)
        self.fields["chain"].choices = [("", "All chains"), *((s, n) for _, s, n in options.chains)]
        self.fields["provider"].choices = [("", "All providers"), *((p, p) for p in options.providers)]
        self.fields["model"].choices = [("", "All models"), *((m, m) for m in options.models)]


_CHOICES = ("chain", "provider", "model", "source")


def _known(value: str | None, choices: list[tuple[str, str]]) -> str:
    return value if value and value in dict(choices) else ""


def filters_from_request(
    request: HttpRequest, *, now: dt.datetime | None = None
) -> tuple[Filters, FilterForm]:
    """Resolved filters (unknown values dropped, never an error) and the filter form showing them."""
    data = request.GET
    tz = tz_from(data.get("tz")) or tz_from(unquote(request.COOKIES.get(TZ_COOKIE, ""))) or default_tz()
    options = filter_options()
    fields = FilterForm({}, options=options).fields
    range_key, start, end = resolve_range(
        data.get("range") or DEFAULT_RANGE,
        data.get("start", ""),
        data.get("end", ""),
        tz,
        now or timezone.now(),
    )
    custom = range_key == CUSTOM
    params = {
        "range": range_key,
        "start": data.get("start", "") if custom else "",
        "end": data.get("end", "") if custom else "",
        **{
            name: _known(data.get(name), fields[name].choices)
            for name in ("chain", "provider", "model", "source")
        },
        "injected": "1" if data.get("injected") in ("1", "on", "true") else "",
    }
    if tz_from(data.get("tz")):
        params["tz"] = data["tz"]
    filters = Filters(
        start=start,
        end=end,
        tz=tz,
        range_key=range_key,
        chain_id={slug: pk for pk, slug, _ in options.chains}.get(params["chain"]),
        chain_slug=params["chain"],
        provider=params["provider"],
        model=params["model"],
        source=params["source"],
        include_injected=bool(params["injected"]),
        params=params,
    )
    return filters, FilterForm(params, options=options)
