"""The API as Django views, for deployments that serve every path through Django (WSGI,
runserver, the test client). rana_site.asgi sends /v1/ to gateway.asgi instead, which runs
the same handlers without Django's middleware; both answer alike."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from gateway.api import chat
from gateway.api.errors import body_too_large
from gateway.api.http import ApiRequest, ApiResponse

Handler = Callable[[ApiRequest], Awaitable[ApiResponse]]


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


async def _serve(request: HttpRequest, handler: Handler) -> HttpResponse:
    body = _read(request)
    if body is None:
        return _django_response(body_too_large(settings.RANA_API_MAX_BODY_BYTES).response())
    headers = {name.lower(): value for name, value in request.headers.items()}
    return _django_response(await handler(ApiRequest(request.method or "GET", request.path, headers, body)))


@csrf_exempt
@login_not_required
async def chat_completions(request: HttpRequest) -> HttpResponse:
    return await _serve(request, chat.chat_completions)


@csrf_exempt
@login_not_required
async def models(request: HttpRequest) -> HttpResponse:
    return await _serve(request, chat.models)


@csrf_exempt
@login_not_required
async def model(request: HttpRequest, slug: str) -> HttpResponse:
    return await _serve(request, lambda api_request: chat.models(api_request, slug))


@csrf_exempt
@login_not_required
async def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    return await _serve(request, chat.dispatch)
