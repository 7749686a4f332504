"""The timeline of one completion, found by the request id every API answer carries."""

from __future__ import annotations

import uuid

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from providers.services import completion_timeline_await


@require_GET
def completion_lookup(request: HttpRequest) -> HttpResponse:
    """GET /completions/?id=<x-rana-request-id>: open that completion's timeline."""
    raw = request.GET.get("id", "").strip()
    error = ""
    if raw:
        try:
            return redirect("completions:detail", request_id=uuid.UUID(raw))
        except ValueError:
            error = "That is not a request id (they look like 01a2b3c4-…)."
    return render(request, "gateway/completion_lookup.html", {"raw": raw, "error": error})


@require_GET
def completion_detail(request: HttpRequest, request_id: uuid.UUID) -> HttpResponse:
    timeline = completion_timeline_await(request_id=request_id)
    if timeline is None:
        raise Http404("No completion with this request id (yet).")
    context = {
        "request_id": request_id,
        "timeline": timeline,
        "completion": timeline.completion,
        "attempts": timeline.attempts,
    }
    return render(request, "gateway/completion_detail.html", context)
