"""Chart JSON views: django-chartjs's line-chart view, fed by dashboard selectors.

Every chart answers three ways from one URL: JSON for Chart.js (labels + datasets, plus our
type/unit/stacking hints), ?format=csv (the same numbers, exact, with machine-readable slot
times) and ?format=table (an HTML table: a fragment for htmx, a page otherwise).
django-chartjs calls series "providers"; here they are series_names, so "provider" keeps one
meaning. Its context also carries a "view" key (an object repr), dropped here.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from chartjs.views.lines import BaseLineChartView
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.cache import patch_vary_headers

from dashboards.charts.log_links import log_base_url
from dashboards.forms import filters_from_request
from dashboards.outcomes import PALETTE
from dashboards.selectors.filters import Filters
from rana_site.htmx import page_or_fragment

Number = int | float | Decimal | None


@dataclass
class ChartData:
    labels: list[str]
    series_names: list[str]
    data: list[list[Number]]  # one list per series, aligned with labels
    kind: str = "bar"  # "bar" | "line"
    unit: str = "count"  # "count" | "%" | "usd" | "ms" | "s" | "min" | "h" | "tokens"
    stacked: bool = False
    horizontal: bool = False
    colors: list[str] = field(default_factory=list)
    keys: list[str] | None = None  # machine-readable labels (CSV), e.g. ISO slot starts
    label_title: str = ""
    note: str = ""
    right_axis: tuple[int, ...] = ()  # series drawn against a second value axis, on the right
    # The request log's filters per label and per series (charts.log_links); None: no links.
    log_points: list[dict[str, str]] | None = None
    log_series: list[dict[str, str]] | None = None

    @property
    def empty(self) -> bool:
        return not any(value for series in self.data for value in series)


def _json_number(value: Number) -> float | int | None:
    if isinstance(value, Decimal):
        return float(round(value, 6))
    return value


def _csv_number(value: Number) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value.quantize(Decimal("0.000001")), "f")
    return str(value)


class LedgerChartView(BaseLineChartView):
    name = ""
    title = ""

    def build(self, f: Filters) -> ChartData:
        raise NotImplementedError

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.filters, _ = filters_from_request(request)
        self.chart = self.build(self.filters)
        fmt = request.GET.get("format", "")
        if fmt == "csv":
            response = self.csv_response()
        elif fmt == "table":
            response = self.table_response(request)
        else:
            response = super().get(request, *args, **kwargs)
        patch_vary_headers(response, ("HX-Request",))
        return response

    # django-chartjs hooks
    def get_labels(self) -> list[str]:
        return self.chart.labels

    def get_providers(self) -> list[str]:
        return self.chart.series_names

    def get_data(self) -> list[list]:
        return [[_json_number(v) for v in series] for series in self.chart.data]

    def get_dataset_options(self, index: int, color: tuple) -> dict:
        colors = self.chart.colors or PALETTE
        hue = colors[index % len(colors)]
        options = {"backgroundColor": hue, "borderColor": hue, "borderWidth": 1}
        if index in self.chart.right_axis:
            options["yAxisID"] = "y1"
        if self.chart.kind == "line":
            options |= {"backgroundColor": hue + "22", "borderWidth": 2, "pointRadius": 0, "tension": 0.25}
            options |= {"spanGaps": False, "fill": False}
        return options

    def get_context_data(self, **kwargs: Any) -> dict:
        context = super().get_context_data(**kwargs)
        context.pop("view", None)
        chart = self.chart
        context.update(
            name=self.name,
            title=self.title,
            type=chart.kind,
            unit=chart.unit,
            stacked=chart.stacked,
            horizontal=chart.horizontal,
            note=chart.note,
            empty=chart.empty,
            log=self.log_links(),
        )
        return context

    def log_links(self) -> dict | None:
        """The request log's URL for each bar or point (see charts.log_links)."""
        chart = self.chart
        if chart.log_points is None:
            return None
        series = chart.log_series or [{} for _ in chart.series_names]
        return {"url": log_base_url(self.filters), "points": chart.log_points, "series": series}

    # CSV and table
    def rows(self) -> list[list]:
        chart = self.chart
        labels = chart.keys or chart.labels
        return [[label, *(series[i] for series in chart.data)] for i, label in enumerate(labels)]

    def csv_response(self) -> HttpResponse:
        filename = f"rana-{self.name}-{self.filters.range_key}.csv"
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        writer = csv.writer(response)
        writer.writerow([self.chart.label_title or "label", *self.chart.series_names])
        for row in self.rows():
            writer.writerow([row[0], *(_csv_number(v) for v in row[1:])])
        return response

    def table_response(self, request: HttpRequest) -> HttpResponse:
        chart = self.chart
        rows = [[label, *(series[i] for series in chart.data)] for i, label in enumerate(chart.labels)]
        context = {
            "chart": chart,
            "title": self.title,
            "name": self.name,
            "rows": rows,
            "filters": self.filters,
        }
        with timezone.override(self.filters.tz):
            return page_or_fragment(
                request,
                fragment="dashboards/_chart_table.html",
                page="dashboards/chart_table.html",
                context=context,
            )
