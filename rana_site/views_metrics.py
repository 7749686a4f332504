"""/metrics: the Prometheus text exposition (README "Metrics, traces and logs").

Its own access rule, not a login (login_not_required): 404 unless RANA_METRICS=1; 403 for a
client outside RANA_METRICS_ALLOW (its address as TrustedProxyMiddleware tells it, so behind
RANA_TRUSTED_PROXIES the forwarded client's); with RANA_METRICS_TOKEN, 401 without an
`Authorization: Bearer` header and 403 with a wrong token.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from providers.services import metrics_exposition
from rana_site.proxies import address_in, client_ip


def metrics_refusal(request: HttpRequest) -> HttpResponse | None:
    """The answer refusing this scrape, or None when it may go on."""
    if not settings.RANA_METRICS:
        raise Http404
    networks = settings.RANA_METRICS_ALLOW_NETWORKS
    if networks and not address_in(client_ip(request) or "", networks):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    token = settings.RANA_METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            response = HttpResponse("a bearer token is required\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    return None


@login_not_required
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    refusal = metrics_refusal(request)
    if refusal is not None:
        return refusal
    body, content_type = metrics_exposition()
    return HttpResponse(body, content_type=content_type)
