"""In real Chromium: both dashboards draw their charts on demo data, and filters redraw them.

Uses tests/browser/conftest.py's browser, page and screenshot_path fixtures; screenshots go
to test-artifacts/screenshots/dashboards-*.png.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from dashboards.services.synth_ledger import synth_ledger_generate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ALL_DRAWN = """() => {
  const canvases = [...document.querySelectorAll('canvas[data-chart-url]')];
  return canvases.length > 0 && canvases.every((c) => c.dataset.rendered);
}"""
INKED = """() => [...document.querySelectorAll('canvas[data-chart-url]')].map((canvas) => {
  const {width, height} = canvas;
  const pixels = canvas.getContext('2d').getImageData(0, 0, width, height).data;
  let inked = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) inked++;
  return [canvas.closest('.chart').id, inked];
})"""
RATES_DATA = """() => JSON.stringify(
  Chart.getChart(document.querySelector('#chart-rates canvas')).data.datasets.map((d) => d.data))"""


@pytest.fixture
def demo_ledger(db):
    return synth_ledger_generate(attempts=3000, days=7, seed=3)


@pytest.fixture
def problems(page: Page) -> list[str]:
    """Console errors, page errors and failed requests (the site has no favicon yet)."""
    found: list[str] = []

    def console(message) -> None:
        if message.type == "error" and "favicon" not in message.location.get("url", ""):
            found.append(message.text)

    def response(answer) -> None:
        if answer.status >= 400 and "favicon" not in answer.url:
            found.append(f"{answer.status} {answer.url}")

    page.on("console", console)
    page.on("response", response)
    page.on("pageerror", lambda error: found.append(str(error)))
    return found


def log_in(page: Page, base_url: str, next_url: str) -> None:
    page.goto(f"{base_url}/accounts/login/?next={next_url}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "correct-horse-9")  # tests/conftest.py's admin_user
    page.click("button[type=submit]")


def wait_until_drawn(page: Page) -> None:
    page.wait_for_function(ALL_DRAWN)
    page.wait_for_function(f"() => ({INKED})().every(([, inked]) => inked > 500)")  # after the animation


def test_reliability_page_draws_every_chart_and_filters_redraw_them(
    page, live_server, admin_user, demo_ledger, problems, screenshot_path
):
    log_in(page, live_server.url, "/dashboards/%3Frange%3D7d")
    expect(page.locator("h1")).to_have_text("Reliability")
    wait_until_drawn(page)
    assert len(page.evaluate(INKED)) == 6
    expect(page.locator("#provider-status tbody[data-provider]")).to_have_count(4)
    page.screenshot(path=screenshot_path("dashboards-reliability"), full_page=True)

    before = page.evaluate(RATES_DATA)
    with page.expect_response(
        lambda r: "/dashboards/charts/rates/" in r.url and "chain=support" in r.url
    ) as hit:
        page.select_option("select[name=chain]", "support")
    assert json.loads(hit.value.body())["labels"]
    wait_until_drawn(page)
    assert page.evaluate(RATES_DATA) != before
    assert "chain=support" in page.url  # kept in the address bar: shareable
    expect(page.locator("#dash-tabs a", has_text="Cost")).to_have_attribute(
        "href", "/dashboards/cost/?range=7d&chain=support"
    )
    page.screenshot(path=screenshot_path("dashboards-reliability-filtered"), full_page=True)
    assert problems == []


def test_cost_page_draws_every_chart_and_a_range_change_redraws_them(
    page, live_server, admin_user, demo_ledger, problems, screenshot_path
):
    log_in(page, live_server.url, "/dashboards/cost/%3Frange%3D7d")
    expect(page.locator("h1")).to_have_text("Cost")
    wait_until_drawn(page)
    assert len(page.evaluate(INKED)) == 7
    expect(page.locator("#budget-burn tbody tr")).not_to_have_count(0)
    page.screenshot(path=screenshot_path("dashboards-cost"), full_page=True)

    with page.expect_response(
        lambda r: "/dashboards/charts/spend-by-provider/" in r.url and "range=24h" in r.url
    ):
        page.select_option("select[name=range]", "24h")
    wait_until_drawn(page)
    labels = page.evaluate(
        "() => Chart.getChart(document.querySelector('#chart-spend-by-provider canvas')).data.labels.length"
    )
    assert labels in (24, 25)  # hourly slots now
    page.locator("#chart-tokens details summary").click()
    expect(page.locator("#chart-tokens .table-slot table")).to_be_visible()
    assert problems == []


CHART_INK = """() => [...document.querySelectorAll('canvas[data-chart-url]')].map((canvas) => {
  const chart = Chart.getChart(canvas);
  if (!chart) return null;
  const values = chart.options.scales[chart.options.indexAxis === 'y' ? 'x' : 'y'];
  return [chart.options.plugins.legend.labels.color, values.grid.color];
}).filter(Boolean)"""


def test_chart_text_and_grid_follow_the_systems_dark_mode(
    page, live_server, admin_user, demo_ledger, problems, screenshot_path
):
    log_in(page, live_server.url, "/dashboards/%3Frange%3D7d")
    wait_until_drawn(page)
    light = page.evaluate(CHART_INK)
    assert light and set(map(tuple, light)) == {("#5d6b7a", "#dde2e8")}  # --muted and --line, light
    page.emulate_media(color_scheme="dark")  # the system switches: charts restyle, no reload
    page.wait_for_function(
        "() => [...document.querySelectorAll('canvas[data-ink]')].every((c) => c.dataset.ink === '#9aa6b4')"
    )
    assert set(map(tuple, page.evaluate(CHART_INK))) == {("#9aa6b4", "#2f3842")}
    page.screenshot(path=screenshot_path("dashboards-reliability-dark"), full_page=True)
    page.reload()  # and a page opened in dark mode draws dark at once
    wait_until_drawn(page)
    assert set(map(tuple, page.evaluate(CHART_INK))) == {("#9aa6b4", "#2f3842")}
    assert problems == []
