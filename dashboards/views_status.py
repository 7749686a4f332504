"""The status page (/status/): every provider and model with its circuit and health, live
(htmx polls the fragment), its JSON twin (/status.json), and the operators' circuit buttons.

The reliability dashboard embeds the same fragment; there is one status table."""

from __future__ import annotations

from django.contrib import messages
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from dashboards.forms import filters_from_request
from dashboards.selectors.status import provider_status
from providers.services import BreakerUnavailable, circuit_force
from rana_site.htmx import page_or_fragment, wants_fragment

FRAGMENT = "dashboards/_provider_status.html"
ACTIONS = ("open", "close", "reset")


def _table(request: HttpRequest) -> HttpResponse:
    filters, _ = filters_from_request(request)
    injected, provider = filters.include_injected, filters.provider
    rows = provider_status(now=timezone.now(), include_injected=injected, provider=provider)
    with timezone.override(filters.tz):
        return page_or_fragment(
            request,
            fragment=FRAGMENT,
            page="dashboards/provider_status.html",
            context={"status": rows, "filters": filters},
        )


@require_GET
def status(request: HttpRequest) -> HttpResponse:
    return _table(request)


@require_GET
def status_json(request: HttpRequest) -> JsonResponse:
    """The same rows as the page, for scripts and monitors."""
    rows = provider_status(now=timezone.now())
    return JsonResponse({"generated_at": timezone.now(), "providers": rows}, encoder=DjangoJSONEncoder)


@require_POST
def circuit(request: HttpRequest) -> HttpResponse:
    """Open, close or reset one circuit by hand (staff only), recorded as who and when."""
    if not request.user.is_staff:
        return HttpResponse("Only staff can change a circuit by hand.", status=403, content_type="text/plain")
    action, model = request.POST.get("action", ""), request.POST.get("model", "").strip()
    try:
        provider_id = int(request.POST.get("provider_id", ""))
    except ValueError:
        provider_id = 0
    if action not in ACTIONS or not model or provider_id <= 0:
        problem = "choose open, close or reset for a provider and model"
        return HttpResponse(f"Bad circuit action: {problem}.", status=400, content_type="text/plain")
    try:
        circuit_force(provider_id=provider_id, model=model, action=action, user=request.user)
    except ValueError as exc:
        return HttpResponse(f"Bad circuit action: {exc}.", status=400, content_type="text/plain")
    except BreakerUnavailable:
        text = "The shared circuit state (Redis) cannot be reached: nothing was changed. Try again."
        return HttpResponse(text, status=503, content_type="text/plain")
    done = {"open": "opened", "close": "closed", "reset": "reset"}[action]
    if wants_fragment(request):
        return _table(request)
    messages.success(request, f"Circuit {model} {done}.")
    return redirect("status")
