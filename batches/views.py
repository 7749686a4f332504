"""Batch pages: upload a file and list batches, a batch's live progress (htmx polling), cancel,
and its result file (streamed). Login is required everywhere (LoginRequiredMiddleware)."""

from __future__ import annotations

import uuid

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from batches.exports import CONTENT_TYPES, result_file
from batches.forms import BatchUploadForm
from batches.models import Batch
from batches.selectors import batch_get, batch_progress, batch_result_page, batches_recent
from batches.services import BatchInvalid, batch_cancel, batch_create
from batches.services.create import BatchOwner
from rana_site.htmx import page_or_fragment


def _batch(batch_id: uuid.UUID) -> Batch:
    batch = batch_get(batch_id=batch_id)
    if batch is None:
        raise Http404("No such batch.")
    return batch


@require_http_methods(["GET", "POST"])
def batch_list(request: HttpRequest) -> HttpResponse:
    form = BatchUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            batch = batch_create(
                data=upload.read(),
                filename=upload.name,
                chain_slug=form.cleaned_data["chain"],
                owner=BatchOwner(user_id=request.user.pk),
                concurrency=form.cleaned_data["concurrency"],
                max_tokens=form.cleaned_data["max_tokens"],
            )
        except BatchInvalid as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
        else:
            return redirect("batches:detail", batch_id=batch.pk)
    status = 400 if form.errors else 200
    context = {"form": form, "batches": batches_recent()}
    return render(request, "batches/batch_list.html", context, status=status)


@require_GET
def batch_detail(request: HttpRequest, batch_id: uuid.UUID) -> HttpResponse:
    batch = _batch(batch_id)
    context = {"batch": batch, "progress": batch_progress(batch)}
    return page_or_fragment(
        request, fragment="batches/_batch_progress.html", page="batches/batch_detail.html", context=context
    )


@require_POST
def batch_cancel_view(request: HttpRequest, batch_id: uuid.UUID) -> HttpResponse:
    batch = batch_cancel(batch_id=_batch(batch_id).pk)
    if getattr(request, "htmx", False):
        context = {"batch": batch, "progress": batch_progress(batch)}
        return render(request, "batches/_batch_progress.html", context)
    return redirect("batches:detail", batch_id=batch.pk)


@require_GET
def batch_results(request: HttpRequest, batch_id: uuid.UUID, fmt: str) -> StreamingHttpResponse:
    if fmt not in CONTENT_TYPES:
        raise Http404("Results come as .csv or .jsonl.")
    batch = _batch(batch_id)
    pages = result_file(lambda after: batch_result_page(batch_id=batch.pk, after_index=after), fmt)
    response = StreamingHttpResponse(pages, content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="batch-{batch.pk}.{fmt}"'
    return response
