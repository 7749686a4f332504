"""The API as Django views, for deployments that serve every path through Django (WSGI,
runserver, the test client). rana_site.asgi sends /v1/ to gateway.asgi instead, which runs
the same handlers without Django's middleware; both answer alike."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from gateway.api import chat
from gateway.api.errors import body_too_large
from gateway.api.http import ApiRequest, ApiResponse


def _read(request: HttpRequest) -> bytes | None:
    """The body, or None past RANA_API_MAX_BODY_BYTES (read directly, not via request.body,
    whose own smaller limit would answer 400 instead of 413)."""
    limit = settings.RANA_API_MAX_BODY_BYTES
    length = request.META.get("CONTENT_LENGTH") or ""
    if length.isdigit() and int(length) > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


def _django_response(response: ApiResponse) -> HttpResponse:
    if response.stream is not None:
        django_response: HttpResponse = StreamingHttpResponse(response.stream, status=response.status)
    else:
        django_response = HttpResponse(response.body, status=response.status)
    for name, value in response.headers:
        django_response[name] = value
    return django_response


@csrf_exempt
@login_not_required
async def api(request: HttpRequest) -> HttpResponse:
    """Every /v1/ path, routed by the one route table (gateway.api.chat.dispatch)."""
    body = _read(request)
    if body is None:
        return _django_response(body_too_large(settings.RANA_API_MAX_BODY_BYTES).response())
    headers = {name.lower(): value for name, value in request.headers.items()}
    query = request.META.get("QUERY_STRING", "")
    return _django_response(
        await chat.dispatch(ApiRequest(request.method or "GET", request.path, headers, body, query))
    )
