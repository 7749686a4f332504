"""One URL, a page or its fragment: the one place every htmx view decides which to render."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers


def wants_fragment(request: HttpRequest, *, target: str | None = None) -> bool:
    """An htmx request (not a history restore), aimed at `target` when one is given."""
    htmx = getattr(request, "htmx", None)
    if not htmx or htmx.history_restore_request:
        return False
    return target is None or htmx.target == target


def page_or_fragment(
    request: HttpRequest,
    *,
    fragment: str,
    page: str,
    context: dict[str, Any],
    target: str | None = None,
    status: int = 200,
) -> HttpResponse:
    """The fragment alone for htmx, else the whole page (its context names the fragment, so a
    generic frame page can include it); always `Vary: HX-Request`."""
    if wants_fragment(request, target=target):
        response = render(request, fragment, context, status=status)
    else:
        response = render(request, page, {**context, "fragment": fragment}, status=status)
    patch_vary_headers(response, ("HX-Request",))
    return response
