"""The filter bar: parses the query string into Filters and renders itself."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.http import HttpRequest
from django.utils import timezone

from dashboards.selectors.filters import (
    CUSTOM,
    DEFAULT_RANGE,
    MAX_SPAN,
    RANGES,
    Filters,
    parse_local,
    resolve_range,
    tz_from,
)
from dashboards.selectors.options import FilterOptions, filter_options
from providers.models import Source
from rana_site.viewer_tz import viewer_tz


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
        self.options = options
        self.fields["chain"].choices = [("", "All chains"), *((s, n) for _, s, n in options.chains)]
        self.fields["provider"].choices = [("", "All providers"), *((p, p) for p in options.providers)]
        self.fields["model"].choices = [("", "All models"), *((m, m) for m in options.models)]


_CHOICES = ("chain", "provider", "model", "source")


def _known(value: str | None, choices: list[tuple[str, str]]) -> str:
    return value if value and value in dict(choices) else ""


def _range_errors(data: Any, tz: dt.tzinfo) -> dict[str, str]:
    """Why the range asked for cannot be shown, by field ({} when it can)."""
    range_key = data.get("range") or DEFAULT_RANGE
    if range_key != CUSTOM:
        return (
            {} if range_key in RANGES else {"range": f"Unknown range “{range_key}”: pick one from the list."}
        )
    begin, finish = parse_local(data.get("start", ""), tz), parse_local(data.get("end", ""), tz)
    errors = {}
    if begin is None:
        errors["start"] = "Give the date and time the range starts."
    if finish is None:
        errors["end"] = "Give the date and time the range ends."
    if errors:
        return errors
    if finish <= begin:
        return {"end": "The range ends before it starts: pick an end after the start."}
    if finish - begin > MAX_SPAN:
        return {"end": f"A custom range spans at most {MAX_SPAN.days} days."}
    return {}


def filter_errors(data: Any, fields: dict[str, forms.Field], tz: dt.tzinfo) -> dict[str | None, str]:
    """Each filter value that cannot be shown (an unknown chain, provider, model or time zone,
    a custom range that ends before it starts), with the words to show beside its field (None:
    the time zone, which has no field)."""
    errors: dict[str | None, str] = dict(_range_errors(data, tz))
    for name in _CHOICES:
        value = data.get(name)
        if value and value not in dict(fields[name].choices):
            errors[name] = f"Unknown {name} “{value}”: pick one from the list."
    if data.get("tz") and tz_from(data["tz"]) is None:
        errors[None] = f"Unknown time zone “{data['tz']}”: use an IANA name such as Europe/Paris."
    return errors


def _with_errors(form: FilterForm, data: Any, errors: dict[str | None, str]) -> FilterForm:
    """The form showing what was asked for (the custom range as typed) and why it cannot be shown."""
    if data.get("range") == CUSTOM:
        form = FilterForm(
            {**form.data, "range": CUSTOM, "start": data.get("start", ""), "end": data.get("end", "")},
            options=form.options,
        )
    form.is_valid()
    for name, words in errors.items():
        form.add_error(name, words)
    return form


def filters_from_request(
    request: HttpRequest, *, now: dt.datetime | None = None
) -> tuple[Filters, FilterForm]:
    """Resolved filters and the filter form showing them. A value that cannot be shown is an
    error on the form (`form.errors`; the pages show it instead of any figures) and is left
    out of the filters, so the chart views still answer for the rest."""
    data = request.GET
    tz = viewer_tz(request)
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
    form = FilterForm(params, options=options)
    errors = filter_errors(data, fields, tz)
    return filters, _with_errors(form, data, errors) if errors else form
