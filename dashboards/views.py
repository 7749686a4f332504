"""Dashboard pages. One URL serves a page and, for htmx, the fragment it swaps in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from dashboards.charts import CHARTS, COST_CHARTS, RELIABILITY_CHARTS, LedgerChartView
from dashboards.forms import filters_from_request
from dashboards.selectors.budget import budget_burn
from dashboards.selectors.cost import cost_summary
from dashboards.selectors.filters import Filters
from dashboards.selectors.query import completion_sums
from dashboards.selectors.reliability import reliability_summary
from dashboards.selectors.status import provider_status
from rana_site.htmx import page_or_fragment, wants_fragment

BODY_ID = "dashboard-body"
WIDE = {"rates", "spend-by-provider", "spend-by-model", "tokens", "funnel"}


def chart_cards(charts: list[type[LedgerChartView]], f: Filters) -> list[dict]:
    query = f.query_string
    cards = []
    for chart in charts:
        url = reverse("dashboards:chart", args=[chart.name])
        sep = "&" if query else ""
        cards.append(
            {
                "name": chart.name,
                "title": chart.title,
                "json_url": f"{url}?{query}",
                "csv_url": f"{url}?{query}{sep}format=csv",
                "table_url": f"{url}?{query}{sep}format=table",
                "wide": chart.name in WIDE,
            }
        )
    return cards


def _hidden_injected(f: Filters) -> int:
    if f.include_injected:
        return 0
    rows = completion_sums(replace(f, include_injected=True), measures=("completions",))
    return sum(row["completions"] for row in rows)


def _dashboard(
    request: HttpRequest, page: str, charts: list, gather: Callable[[Filters], dict]
) -> HttpResponse:
    """A dashboard page or its body; filters that cannot be shown are their errors instead of
    any figures (400 for the page; 200 for htmx, which swaps no 4xx, so the error is seen)."""
    filters, form = filters_from_request(request)
    context = {"filters": filters, "form": form, "page": page, "charts": chart_cards(charts, filters)}
    if form.errors:
        context["empty"] = False
    else:
        context |= gather(filters)
    if context["empty"]:
        context["hidden_injected"] = _hidden_injected(filters)
    context["body_template"] = f"dashboards/_{page}_body.html"
    with timezone.override(filters.tz):
        return page_or_fragment(
            request,
            fragment=context["body_template"],
            page="dashboards/dashboard_page.html",
            context=context,
            target=BODY_ID,
            status=400 if form.errors and not wants_fragment(request, target=BODY_ID) else 200,
        )


def _status_rows(f: Filters) -> list[dict]:
    return provider_status(now=timezone.now(), include_injected=f.include_injected, provider=f.provider)


def _reliability(f: Filters) -> dict:
    summary = reliability_summary(f)
    status = _status_rows(f)
    return {"summary": summary, "status": status, "empty": not (summary["requests"] or summary["attempts"])}


def _cost(f: Filters) -> dict:
    summary = cost_summary(f)
    budget = budget_burn(now=timezone.now(), chain_id=f.chain_id)
    return {"summary": summary, "budget": budget, "empty": not (summary["requests"] or summary["attempts"])}


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The reliability dashboard (the nav's "Dashboards" link)."""
    return _dashboard(request, "reliability", RELIABILITY_CHARTS, _reliability)


@require_GET
def cost(request: HttpRequest) -> HttpResponse:
    return _dashboard(request, "cost", COST_CHARTS, _cost)


@require_GET
def chart(request: HttpRequest, name: str) -> HttpResponse:
    """One chart's numbers: JSON for Chart.js, ?format=csv or ?format=table."""
    view = CHARTS.get(name)
    if view is None:
        raise Http404("No such chart.")
    return view.as_view()(request)
