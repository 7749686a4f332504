"""Executing a run (server-sent events or one POST), its answer and timeline fragments, compare.

The SSE view is async and must be served by the ASGI server: tokens are sent as they
arrive (no buffering: no GZip middleware, Cache-Control: no-cache, X-Accel-Buffering: no).
When the browser closes the EventSource (Stop), the ASGI handler cancels the response; the
providers service closes the upstream and records the completion as cancelled.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

from asgiref.sync import async_to_sync, sync_to_async
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import reswap, retarget

from . import services
from .forms import CompareForm
from .models import PlaygroundRun
from .rendering import answer_html, page_or_fragment, sse_event, turn
from .selectors import compare_runs, run_get

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _events(request: HttpRequest, run: PlaygroundRun) -> AsyncIterator[bytes]:
    yield b": open\n\n"
    async for text in services.run_stream_tokens(run):
        yield sse_event("token", json.dumps(text))
    yield sse_event("done", await sync_to_async(answer_html)(request, run))


@require_GET
async def run_stream(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """Execute a pending streamed run as server-sent events: token*, then done (the answer HTML).

    A run that is not pending (already started, finished, or not the user's) gets 204, which
    also tells an EventSource not to reconnect.
    """
    user = await request.auser()
    run = await services.run_claim(run_id=run_id, user_id=user.pk)
    if run is None:
        return HttpResponse(status=204)
    response = StreamingHttpResponse(_events(request, run), content_type="text/event-stream")
    for name, value in STREAM_HEADERS.items():
        response[name] = value
    return response


@require_POST
async def run_complete(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """Execute a pending non-streamed run; answer with its answer fragment."""
    user = await request.auser()
    run = await services.run_claim(run_id=run_id, user_id=user.pk)
    if run is None:
        run = await sync_to_async(run_get)(run_id=run_id, user_id=user.pk)
        if run is None:
            raise Http404("No such run.")
    else:
        await services.run_execute(run)
    return await sync_to_async(_answer_response)(request, run)


def _answer_response(request: HttpRequest, run: PlaygroundRun) -> HttpResponse:
    return render(request, "playground/_answer.html", turn(run))


def _owned(request: HttpRequest, run_id: uuid.UUID) -> PlaygroundRun:
    run = run_get(run_id=run_id, user_id=request.user.pk)
    if run is None:
        raise Http404("No such run.")
    return run


@require_GET
def run_answer(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """A run's answer as it stands (it polls itself while the run is still running)."""
    return page_or_fragment(request, "playground/_answer.html", turn(_owned(request, run_id)), title="Answer")


@require_GET
def run_timeline(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    return page_or_fragment(
        request, "playground/_attempt_timeline.html", turn(_owned(request, run_id)), title="Attempt timeline"
    )


def _compare_start(request: HttpRequest, form: CompareForm) -> list[PlaygroundRun]:
    data, group = form.cleaned_data, uuid.uuid4()
    messages = services.run_messages(parent=None, system=data["system"], message=data["message"])
    return [
        services.run_create(
            user_id=request.user.pk,
            chain_slug=slug,
            messages=messages,
            params=form.params(),
            stream=data["stream"],
            compare_group=group,
        )
        for slug in (data["chain"], data["chain_b"])
    ]


async def _execute_all(runs: list[PlaygroundRun]) -> None:
    claimed = [await services.run_claim(run_id=r.pk, user_id=r.user_id) for r in runs]
    await asyncio.gather(*(services.run_execute(r) for r in claimed if r is not None))


@require_http_methods(["GET", "POST"])
def compare(request: HttpRequest) -> HttpResponse:
    """One prompt through two chains side by side, each with its timeline and cost."""
    form = CompareForm(request.POST or None)
    context: dict = {"form": form, "columns": []}
    if request.method == "POST" and form.is_valid():
        runs = _compare_start(request, form)
        if not request.htmx:  # no JavaScript: answer both now, concurrently
            async_to_sync(_execute_all)(runs)
            runs = compare_runs(group=runs[0].compare_group, user_id=request.user.pk)
        context["columns"] = [turn(r) for r in runs]
    elif request.method == "POST" and request.htmx:
        response = render(request, "playground/_compare_form.html", context)
        return reswap(retarget(response, "#pg-compare-form"), "outerHTML")
    fragment = (
        "playground/_compare_result.html" if request.method == "POST" else "playground/_compare_form.html"
    )
    return page_or_fragment(request, fragment, context, page="playground/playground_compare.html")
