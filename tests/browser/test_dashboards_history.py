"""In real Chromium: Back and Forward on a dashboard restore the filters of that URL in the
form and redraw every chart for them (htmx loads the page from the server: hx-history="false").

Uses test_dashboards.py's helpers and demo ledger; screenshots go to
test-artifacts/screenshots/dashboards-history-*.png.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser import test_dashboards as dashboards
from tests.browser.test_dashboards import ALL_DRAWN, RATES_DATA, log_in, wait_until_drawn

demo_ledger = dashboards.demo_ledger  # the fixtures, shared
problems = dashboards.problems

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MARK_OLD = (
    "() => document.querySelectorAll('canvas[data-chart-url]').forEach((c) => { c.dataset.old = '1'; })"
)
REDRAWN = f"""() => !document.querySelector('canvas[data-chart-url][data-old]') && ({ALL_DRAWN})()"""


def filters(page: Page) -> dict:
    return {
        name: page.locator(f"[data-dashboard-filters] select[name={name}]").input_value()
        for name in ("range", "chain")
    }


def go(page: Page, direction: str) -> None:
    """Back or Forward, then wait until the restored page has drawn its own charts."""
    page.evaluate(MARK_OLD)
    getattr(page, f"go_{direction}")()
    page.wait_for_function(REDRAWN)
    wait_until_drawn(page)


def test_back_and_forward_restore_the_filters_and_redraw_the_charts(
    page, live_server, admin_user, demo_ledger, problems, screenshot_path
):
    log_in(page, live_server.url, "/dashboards/%3Frange%3D7d")
    wait_until_drawn(page)
    week_all = page.evaluate(RATES_DATA)

    page.evaluate(MARK_OLD)
    page.select_option("select[name=chain]", "support")
    page.wait_for_function(REDRAWN)
    wait_until_drawn(page)
    week_support = page.evaluate(RATES_DATA)
    assert week_support != week_all

    page.evaluate(MARK_OLD)
    page.select_option("select[name=range]", "24h")
    page.wait_for_function(REDRAWN)
    wait_until_drawn(page)
    assert "range=24h" in page.url and "chain=support" in page.url

    go(page, "back")
    assert "range=7d" in page.url and "chain=support" in page.url
    assert filters(page) == {"range": "7d", "chain": "support"}
    assert page.evaluate(RATES_DATA) == week_support
    page.screenshot(path=screenshot_path("dashboards-history-back"), full_page=True)

    go(page, "back")
    assert filters(page) == {"range": "7d", "chain": ""}
    assert page.evaluate(RATES_DATA) == week_all

    go(page, "forward")
    assert filters(page) == {"range": "7d", "chain": "support"}
    assert page.evaluate(RATES_DATA) == week_support
    expect(page.locator("#dash-tabs a", has_text="Cost")).to_have_attribute(
        "href", "/dashboards/cost/?range=7d&chain=support"
    )

    page.select_option("select[name=range]", "custom")  # the restored form still reacts
    expect(page.locator("[data-dashboard-filters]")).to_have_class("filters is-custom")
    assert problems == []
