"""Dashboard pages and chart views: pages and htmx fragments, JSON, CSV, tables, login."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from dashboards.charts import CHARTS
from tests.dashboards.conftest import attempt, request_rows

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "dashboard-body"}


@pytest.fixture
def recent(record, chain, two_providers):
    """A few requests over the last hours, so the default 24 h range shows them."""
    now = timezone.now()
    p2 = {"provider": "p2", "model": "m2", "step": 1}
    for hours, attempts, kwargs in [
        (1, [attempt(cost_usd=Decimal("0.125"), input_tokens=900, ttft_ms=120)], {"key": "rk_live"}),
        (2, [attempt(outcome="rate_limited"), attempt(**p2, cost_usd=Decimal("0.5"))], {}),
        (3, [attempt(outcome="server_error", injected=True)], {"source": "playground"}),
    ]:
        at = now - dt.timedelta(hours=hours)
        record(request_rows(at=at, attempts=attempts, chain=chain, providers=two_providers, **kwargs))
    return chain


@pytest.mark.parametrize("name", ["dashboards:index", "dashboards:cost", "status", "status-json"])
def test_pages_need_a_login(client, db, name):
    response = client.get(reverse(name))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_chart_json_needs_a_login(client, db):
    response = client.get(reverse("dashboards:chart", args=["rates"]))
    assert response.status_code == 302


PAGES = [("dashboards:index", "Reliability"), ("dashboards:cost", "Cost")]


@pytest.mark.parametrize(("name", "heading"), PAGES)
def test_page_renders_whole_and_as_an_htmx_fragment(admin_client, recent, name, heading):
    page = admin_client.get(reverse(name), {"range": "24h"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "<html" in html and f"<h1>{heading}</h1>" in html and 'id="dashboard-body"' in html
    assert "chart.js-4.6.1.umd.min.js" in html and "data-chart-url=" in html
    assert "HX-Request" in page["Vary"]
    fragment = admin_client.get(reverse(name), {"range": "24h"}, **HTMX)
    body = fragment.content.decode()
    assert fragment.status_code == 200 and "HX-Request" in fragment["Vary"]
    assert "<html" not in body and body.lstrip().startswith('<div id="dashboard-body"')
    assert 'id="dash-tabs"' in body and 'hx-swap-oob="true"' in body  # tabs keep the filters


def test_filters_are_kept_in_chart_and_tab_links(admin_client, recent):
    params = {"range": "7d", "chain": "main", "injected": "1"}
    html = admin_client.get(reverse("dashboards:index"), params).content.decode()
    assert "/dashboards/charts/rates/?range=7d&amp;chain=main&amp;injected=1" in html
    assert "/dashboards/cost/?range=7d&amp;chain=main&amp;injected=1" in html
    assert 'value="main" selected' in html


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"chain": "nope"}, "chain", "Unknown chain “nope”"),
        ({"provider": "nobody"}, "provider", "Unknown provider “nobody”"),
        ({"range": "9y"}, "range", "Unknown range “9y”"),
        ({"tz": "Mars/Olympus"}, None, "Unknown time zone “Mars/Olympus”"),
        (
            {"range": "custom", "start": "2025-03-02T10:00", "end": "2025-03-01T10:00"},
            "end",
            "The range ends before it starts",
        ),
        ({"range": "custom", "start": "yesterday", "end": "2025-03-01T10:00"}, "start", "Give the date"),
    ],
)
@pytest.mark.parametrize("page", ["dashboards:index", "dashboards:cost"])
def test_filters_that_cannot_be_shown_are_a_visible_error_not_other_figures(
    admin_client, recent, params, field, words, page
):
    response = admin_client.get(reverse(page), params)
    html = response.content.decode()
    assert response.status_code == 400
    assert 'id="filter-errors"' in html and words in html
    assert "data-chart-url" not in html and 'class="kpis"' not in html  # no figures for other filters
    if field:
        assert html.count(words) == 2  # beside its field, and in the error box
    fragment = admin_client.get(
        reverse(page), params, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="dashboard-body"
    )
    assert fragment.status_code == 200  # htmx swaps no 4xx: the error must reach the page
    assert 'id="filter-errors"' in fragment.content.decode() and words in fragment.content.decode()


def test_a_custom_range_is_kept_as_typed_beside_its_error(admin_client, recent):
    params = {"range": "custom", "start": "2025-03-02T10:00", "end": "2025-03-01T10:00"}
    html = admin_client.get(reverse("dashboards:index"), params).content.decode()
    assert 'value="2025-03-02T10:00"' in html and 'value="2025-03-01T10:00"' in html
    assert 'class="filters is-custom"' in html


def test_a_valid_custom_range_shows_its_figures(admin_client, recent):
    now = timezone.localtime(timezone.now())
    params = {
        "range": "custom",
        "start": (now - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        "end": (now + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"),
    }
    response = admin_client.get(reverse("dashboards:index"), params)
    assert response.status_code == 200 and 'id="filter-errors"' not in response.content.decode()
    assert "data-chart-url" in response.content.decode()


def test_reliability_page_shows_figures_and_provider_status(admin_client, recent):
    html = admin_client.get(reverse("dashboards:index")).content.decode()
    assert "100.00%" in html  # both visible requests answered; the injected one is hidden
    assert "50.00%" in html  # fallback rate: one of two
    assert 'id="provider-status"' in html and "rate_limited" in html
    with_injected = admin_client.get(reverse("dashboards:index"), {"injected": "1"}).content.decode()
    assert "66.67%" in with_injected


def test_cost_page_shows_spend_and_budget_burn(admin_client, recent):
    html = admin_client.get(reverse("dashboards:cost")).content.decode()
    assert "$0.6250" in html and 'id="budget-burn"' in html and "Main" in html


def test_empty_range_explains_what_to_do(admin_client, record, db):
    record(request_rows(at=timezone.now() - dt.timedelta(minutes=5), attempts=[attempt(injected=True)]))
    html = admin_client.get(reverse("dashboards:index"), {"range": "1h"}).content.decode()
    assert "No requests in this range" in html and "rana_synth_ledger" in html
    assert "1 request with injected faults is hidden" in html
    assert "data-chart-url" not in html


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_every_chart_answers_json_csv_and_table(admin_client, recent, name):
    url = reverse("dashboards:chart", args=[name])
    params = {"range": "24h", "injected": "1"}
    payload = admin_client.get(url, params).json()
    assert "view" not in payload and payload["name"] == name
    assert {"labels", "datasets", "type", "unit", "empty"} <= set(payload)
    assert not payload["empty"], name
    rows = list(csv.reader(io.StringIO(admin_client.get(url, params | {"format": "csv"}).content.decode())))
    assert rows[0][1:] == [d["label"] for d in payload["datasets"]]
    assert len(rows) == len(payload["labels"]) + 1
    table = admin_client.get(url, params | {"format": "table"}, HTTP_HX_REQUEST="true").content.decode()
    assert "<table" in table and "<html" not in table
    assert "<html" in admin_client.get(url, {"format": "table"}).content.decode()


def test_csv_numbers_are_exact_and_named_for_download(admin_client, recent):
    response = admin_client.get(reverse("dashboards:chart", args=["spend-by-source"]), {"format": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="rana-spend-by-source-24h.csv"' in response["Content-Disposition"]
    assert list(csv.reader(io.StringIO(response.content.decode()))) == [
        ["source", "Spend"],
        ["api", "0.625000"],
    ]


def test_chart_json_uses_the_viewers_timezone(admin_client, recent):
    url = reverse("dashboards:chart", args=["rates"])
    admin_client.cookies["rana_tz"] = "Asia%2FTokyo"  # as the page's script writes it
    rows = list(csv.reader(io.StringIO(admin_client.get(url, {"format": "csv"}).content.decode())))
    assert rows[0][0] == "Hour starting (Asia/Tokyo)" and rows[2][0].endswith("+09:00")
    explicit = admin_client.get(url, {"format": "csv", "tz": "America/Denver"}).content.decode()
    assert "(America/Denver)" in explicit


def test_unknown_chart_is_404(admin_client, db):
    assert admin_client.get(reverse("dashboards:chart", args=["nope"])).status_code == 404


def test_status_url_serves_a_fragment_for_htmx_and_a_page_otherwise(admin_client, recent):
    fragment = admin_client.get(reverse("status"), HTTP_HX_REQUEST="true").content.decode()
    assert fragment.lstrip().startswith('<section class="card status" id="provider-status"')
    assert "<html" in admin_client.get(reverse("status")).content.decode()


def test_custom_range_is_read_in_the_viewers_timezone(admin_client, recent):
    url = reverse("dashboards:chart", args=["rates"])
    params = {"range": "custom", "start": "2025-03-10T00:00", "end": "2025-03-10T03:00", "tz": "Europe/Paris"}
    payload = admin_client.get(url, params).json()
    assert payload["labels"][0] == "00:00" and len(payload["labels"]) == 180  # minutes, Paris clock
    assert json.dumps(payload)  # plain JSON throughout
