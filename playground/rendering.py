"""Shared view helpers: a page or its fragment from one URL, answer contexts, SSE framing."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils.cache import patch_vary_headers

from .models import PlaygroundRun
from .selectors import run_thread, run_timeline


def page_or_fragment(
    request: HttpRequest, fragment: str, context: dict[str, Any], *, page: str | None = None, title: str = ""
) -> HttpResponse:
    """With HX-Request: the fragment alone; else the page (or the fragment in the site frame)."""
    if getattr(request, "htmx", False):
        response = render(request, fragment, context)
    else:
        context = {**context, "fragment": fragment, "title": title or "Playground"}
        response = render(request, page or "playground/playground_fragment.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def turn(run: PlaygroundRun) -> dict[str, Any]:
    """One run as the templates show it: the run and, once finished, its timeline."""
    return {"run": run, "timeline": run_timeline(run) if run.finished else None}


def thread_turns(run: PlaygroundRun) -> list[dict[str, Any]]:
    return [turn(r) for r in run_thread(run)]


def answer_html(request: HttpRequest, run: PlaygroundRun) -> str:
    return render_to_string("playground/_answer.html", turn(run), request=request)


def sse_event(event: str, data: str) -> bytes:
    """One server-sent event; every line of `data` gets its own data: field."""
    lines = "\n".join(f"data: {line}" for line in data.split("\n"))
    return f"event: {event}\n{lines}\n\n".encode()
