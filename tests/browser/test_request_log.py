"""In real Chromium: a click on a dashboard bar opens the request log with that bar's filters,
and a click on a log row opens its completion page.

Uses tests/browser/conftest.py's fixtures; screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from dashboards.services.synth_ledger import synth_ledger_generate
from tests.browser.test_dashboards import log_in, wait_until_drawn

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BAR_CENTRE = """([selector, dataset, index]) => {
  const chart = Chart.getChart(document.querySelector(selector));
  const point = chart.getDatasetMeta(dataset).data[index].getCenterPoint();
  return [point.x, point.y, chart.data.labels[index]];
}"""


@pytest.fixture
def demo_ledger(db):
    return synth_ledger_generate(attempts=1500, days=2, seed=5)


def _click_bar(page: Page, selector: str, dataset: int, index: int) -> str:
    page.locator(selector).scroll_into_view_if_needed()
    x, y, label = page.evaluate(BAR_CENTRE, [selector, dataset, index])
    box = page.locator(selector).bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    return label


def test_a_bar_opens_its_requests_and_a_row_its_completion(
    page, live_server, admin_user, demo_ledger, screenshot_path
):
    log_in(page, live_server.url, "/dashboards/%3Frange%3D7d%26chain%3Dsupport")
    wait_until_drawn(page)
    provider = _click_bar(page, "#chart-attempts-by-provider canvas", 0, 0)
    page.wait_for_url(re.compile(r"/requests/\?"))
    query = parse_qs(urlsplit(page.url).query)
    assert query["provider"] == [provider] and query["chain"] == ["support"]
    assert {"start", "end"} <= set(query)
    rows = page.locator(".log-table tbody tr")
    expect(rows.first).to_be_visible()
    page.screenshot(path=screenshot_path("request-log"), full_page=True)

    request_id = rows.first.get_attribute("data-request-id")
    box = rows.first.locator("td").nth(4).bounding_box()  # anywhere on the row, not only the link
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url(f"**/completions/{request_id}/")
    expect(page.locator("h1")).to_contain_text(request_id)


def test_a_time_slot_opens_that_slot(page, live_server, admin_user, demo_ledger):
    log_in(page, live_server.url, "/dashboards/cost/%3Frange%3D24h")
    wait_until_drawn(page)
    data = page.evaluate(
        "() => Chart.getChart(document.querySelector('#chart-tokens canvas')).data.datasets[0].data"
    )
    index = max(range(len(data)), key=lambda i: data[i] or 0)
    _click_bar(page, "#chart-tokens canvas", 0, index)
    page.wait_for_url(re.compile(r"/requests/\?"))
    query = parse_qs(urlsplit(page.url).query)
    assert query["start"][0] < query["end"][0]
    expect(page.locator(".log-table tbody tr").first).to_be_visible()
