"""GET /requests/: the request log page; GET /requests/export.<csv|jsonl>: the filtered rows."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from gateway.requestlog.export import FORMATS, export_lines
from gateway.requestlog.forms import log_form
from gateway.requestlog.query import log_page


@require_GET
def request_log(request: HttpRequest) -> HttpResponse:
    form = log_form(request)
    context = {"form": form, "page": None, "older_url": "", "newer_url": "", "export": ""}
    if not form.is_valid():
        return render(request, "gateway/request_log.html", context, status=400)
    d = form.cleaned_data
    page = log_page(form.log_query(), older_than=d["older_cursor"], newer_than=d["newer_cursor"])
    context |= {
        "page": page,
        "filters": form.filter_params(),
        "older_url": f"?{form.filter_params(older=str(page.older))}" if page.older else "",
        "newer_url": f"?{form.filter_params(newer=str(page.newer))}" if page.newer else "",
        "first_url": f"?{form.filter_params()}" if d["older_cursor"] or d["newer_cursor"] else "",
    }
    with timezone.override(form.fields["start"].tz):
        return render(request, "gateway/request_log.html", context)


@require_GET
def request_log_export(request: HttpRequest, fmt: str) -> HttpResponse:
    if fmt not in FORMATS:
        raise Http404("Export as csv or jsonl.")
    form = log_form(request)
    if not form.is_valid():
        return render(request, "gateway/request_log.html", {"form": form, "page": None}, status=400)
    response = StreamingHttpResponse(export_lines(form.log_query(), fmt), content_type=FORMATS[fmt])
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="rana-requests-{stamp}.{fmt}"'
    return response
