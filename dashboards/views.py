from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from providers.selectors import ledger_totals


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboards/dashboards_index.html", {"totals": ledger_totals()})
