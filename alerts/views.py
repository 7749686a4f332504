"""The alert history (/alerts/): events newest first with their rule, what fired, when, whether
it resolved, and each channel's delivery status; polled by htmx like the status page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from alerts.selectors import alert_history
from rana_site.htmx import page_or_fragment


@require_GET
def history(request: HttpRequest) -> HttpResponse:
    return page_or_fragment(
        request,
        fragment="alerts/_event_list.html",
        page="alerts/event_list.html",
        context={"events": alert_history()},
    )
