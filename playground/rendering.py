"""Shared view helpers: a page or its fragment from one URL, answer contexts, SSE framing."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from providers.services import completion_timeline_await
from rana_site import htmx

from .forms import ToolResultsForm
from .models import PlaygroundRun
from .selectors import run_thread

ANSWERED = ("success", "cache_hit")


def tool_form(run: PlaygroundRun, data: Any = None) -> ToolResultsForm | None:
    """The form to answer a finished answer's tool calls by hand (None when there is none to
    answer: no calls, a failed or compared run)."""
    if not run.tool_calls or not run.finished or run.outcome not in ANSWERED or run.compare_group:
        return None
    return ToolResultsForm(data, calls=run.calls, auto_id=f"id_{run.pk.hex[:12]}_%s")


def page_or_fragment(
    request: HttpRequest, fragment: str, context: dict[str, Any], *, page: str | None = None, title: str = ""
) -> HttpResponse:
    """The playground's pages: a fragment without a page of its own is shown in the site frame."""
    page_context = {**context, "title": title or "Playground"}
    return htmx.page_or_fragment(
        request, fragment=fragment, page=page or "playground/playground_fragment.html", context=page_context
    )


def turn(run: PlaygroundRun, *, earlier: bool = False) -> dict[str, Any]:
    """One run as the templates show it: the run and, once finished, its timeline (its ledger
    rows waited for first, since they are written behind the answer, maybe by another worker),
    and the form to answer its tool calls unless a later turn of the thread follows it."""
    timeline = None
    if run.finished and run.completion_id is not None:
        timeline = completion_timeline_await(request_id=run.completion_id)
    return {"run": run, "timeline": timeline, "tool_form": None if earlier else tool_form(run)}


def thread_turns(run: PlaygroundRun) -> list[dict[str, Any]]:
    runs = run_thread(run)
    return [turn(r, earlier=i < len(runs) - 1) for i, r in enumerate(runs)]


def answer_html(request: HttpRequest, run: PlaygroundRun) -> str:
    return render_to_string("playground/_answer.html", turn(run), request=request)


def sse_event(event: str, data: str) -> bytes:
    """One server-sent event; every line of `data` gets its own data: field."""
    lines = "\n".join(f"data: {line}" for line in data.split("\n"))
    return f"event: {event}\n{lines}\n\n".encode()
