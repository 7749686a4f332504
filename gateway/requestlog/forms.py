"""The request log's filter form: the query string in, a LogQuery (or form errors) out."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.http import HttpRequest
from django.utils import timezone

from gateway.requestlog.query import SEARCH_ERROR, SEARCH_KEY, SEARCH_PROMPT, Cursor, LogQuery
from providers.models import CompletionOutcome, FallbackChain, Source
from providers.selectors import bodies_kept
from rana_site.viewer_tz import viewer_tz

RANGES = {
    "1h": ("Last hour", dt.timedelta(hours=1)),
    "24h": ("Last 24 hours", dt.timedelta(hours=24)),
    "7d": ("Last 7 days", dt.timedelta(days=7)),
    "30d": ("Last 30 days", dt.timedelta(days=30)),
}
PROMPT_NEEDS_BODIES = (
    "Search by prompt text needs body logging, and no chain keeps request bodies: turn it on "
    'under a chain\'s "Request bodies" in the admin, or search by provider error text or key prefix.'
)
# Everything that narrows the log (the cursor, which only pages, is not a filter).
FILTER_NAMES = (
    "range", "start", "end", "chain", "provider", "model", "outcome", "source", "key",
    "fallback", "cost_above", "latency_above", "q", "search_in",
)  # fmt: skip


class LocalDateTimeField(forms.CharField):
    """An ISO 8601 time; without an offset it is read on the viewer's clock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # A text box, not datetime-local: a dashboard's link carries an offset it could not show.
        kwargs.setdefault("widget", forms.TextInput(attrs={"placeholder": "2025-03-01T14:30", "size": 22}))
        super().__init__(*args, required=False, **kwargs)
        self.tz = zoneinfo.ZoneInfo("UTC")

    def clean(self, value: Any) -> dt.datetime | None:
        value = super().clean(value).strip()
        if not value:
            return None
        try:
            moment = dt.datetime.fromisoformat(value.replace(" ", "T"))
        except ValueError:
            raise forms.ValidationError("Give a date and time like 2025-03-01T14:30.") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=self.tz)


class RequestLogForm(forms.Form):
    range = forms.ChoiceField(
        required=False, choices=[("", "Any time"), *((k, label) for k, (label, _) in RANGES.items())]
    )
    start = LocalDateTimeField(label="From")
    end = LocalDateTimeField(label="Until")
    chain = forms.ChoiceField(required=False)
    provider = forms.CharField(required=False, max_length=100, help_text="Tried by any attempt.")
    model = forms.CharField(required=False, max_length=200)
    outcome = forms.ChoiceField(required=False, choices=[("", "Any outcome"), *CompletionOutcome.choices])
    source = forms.ChoiceField(required=False, choices=[("", "Any source"), *Source.choices])
    key = forms.CharField(required=False, max_length=32, label="Gateway key prefix")
    fallback = forms.ChoiceField(
        required=False, choices=[("", "Fallback or not"), ("yes", "Fallback used"), ("no", "No fallback")]
    )
    cost_above = forms.DecimalField(
        required=False, min_value=0, max_digits=16, decimal_places=10, label="Cost above ($)"
    )
    latency_above = forms.FloatField(required=False, min_value=0, label="Latency above (ms)")
    q = forms.CharField(required=False, max_length=200, label="Search")
    search_in = forms.ChoiceField(
        required=False,
        label="Search in",
        choices=[
            (SEARCH_ERROR, "Provider error text"),
            (SEARCH_KEY, "Key prefix"),
            (SEARCH_PROMPT, "Prompt text"),
        ],
    )
    older = forms.CharField(required=False, widget=forms.HiddenInput)
    newer = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, data: Any, *args: Any, tz: zoneinfo.ZoneInfo, **kwargs: Any) -> None:
        super().__init__(data, *args, **kwargs)
        chains = FallbackChain.objects.order_by("name").values_list("id", "slug", "name")
        self._chain_ids = {slug: pk for pk, slug, _ in chains}
        self.fields["chain"].choices = [("", "Any chain"), *((slug, name) for _, slug, name in chains)]
        self.fields["start"].tz = self.fields["end"].tz = tz

    def _clean_cursor(self, name: str) -> Cursor | None:
        raw = self.cleaned_data.get(name, "").strip()
        try:
            return Cursor.parse(raw) if raw else None
        except ValueError:
            self.add_error(name, "This page link is broken: start again from the newest page.")
            return None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and start >= end:
            self.add_error("end", "The end must come after the start.")
        query = data.get("q", "").strip()
        data["q"] = query
        if query and data.get("search_in") == SEARCH_PROMPT and not _is_uuid(query) and not bodies_kept():
            self.add_error("q", PROMPT_NEEDS_BODIES)
        data["older_cursor"] = self._clean_cursor("older")
        data["newer_cursor"] = self._clean_cursor("newer")
        return data

    def log_query(self, *, now: dt.datetime | None = None) -> LogQuery:
        """The resolved query (call after is_valid())."""
        d = self.cleaned_data
        start, end = d.get("start"), d.get("end")
        if d.get("range"):
            since = (now or timezone.now()) - RANGES[d["range"]][1]
            start = max(start, since) if start else since
        query = d.get("q", "")
        return LogQuery(
            start=start,
            end=end,
            chain_id=self._chain_ids.get(d.get("chain", "")),
            provider=d.get("provider", "").strip(),
            model=d.get("model", "").strip(),
            outcome=d.get("outcome", ""),
            source=d.get("source", ""),
            key_prefix=d.get("key", "").strip(),
            fallback={"yes": True, "no": False}.get(d.get("fallback", "")),
            cost_above=d.get("cost_above"),
            latency_above=d.get("latency_above"),
            request_id=uuid.UUID(query) if _is_uuid(query) else None,
            search="" if _is_uuid(query) else query,
            search_in=d.get("search_in") or SEARCH_ERROR,
        )

    def filter_params(self, **extra: str) -> str:
        """The filters as given (no cursor), with `extra`, as a query string for links."""
        params = {name: self.data.get(name, "") for name in (*FILTER_NAMES, "tz")}
        return urlencode({k: v for k, v in (params | extra).items() if v})


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def log_form(request: HttpRequest) -> RequestLogForm:
    return RequestLogForm(request.GET, tz=viewer_tz(request))
