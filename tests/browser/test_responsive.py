"""Every app page in real Chromium at a phone's width (390 px) and a laptop's (1366 px).

No page scrolls sideways at either width; on the phone the playground shows the conversation
first with its settings in a drawer, Send stays on screen, and a prompt gets its answer.
Screenshots go to test-artifacts/screenshots/responsive-*.png for review.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.playground.asgi_server import PASSWORD, USERNAME, AsgiServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

APP_PAGES = [
    "/playground/",
    "/playground/history",
    "/playground/compare",
    "/dashboards/",
    "/dashboards/cost/",
    "/status/",
    "/alerts/",
    "/batches/",
    "/requests/",
]
# A week of demo traffic, so the dashboards and the status page have charts and tables to fit.
LEDGER_SEED = """
from dashboards.services.synth_ledger import synth_ledger_generate
synth_ledger_generate(attempts=600, days=7, seed=5)
from providers.models import Completion, CompletionBody
newest = Completion.objects.order_by("-created_at").first()
words = "x" * 2000  # one long word: the completion page must wrap it
CompletionBody.objects.create(
    completion=newest, created_at=newest.created_at, prompt=words, answer="y" * 2000,
    messages='[{"role": "user", "content": "' + words + '"}]',
)
"""
PAST_THE_EDGE = """(width) => [...document.querySelectorAll('body *')]
  .filter((e) => e.getBoundingClientRect().right > width + 1)
  .map((e) => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))
  .slice(0, 8)"""


@pytest.fixture(scope="module")
def server() -> Iterator[AsgiServer]:
    with AsgiServer(tokens_per_s=40, extra_seed=LEDGER_SEED) as server:
        yield server


def log_in(page: Page, server: AsgiServer) -> None:
    page.goto(server.url("/accounts/login/?next=/playground/"))
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator(".pg-head h1")).to_have_text("Playground")


def assert_no_sideways_scroll(page: Page, width: int) -> None:
    page.wait_for_load_state("networkidle")
    wide = page.evaluate(PAST_THE_EDGE, width)
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{page.url} is {scroll_width} px wide at {width}: {wide}"


def in_viewport(page: Page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= size["height"]


@pytest.mark.parametrize("width", [390, 1366])
def test_no_app_page_scrolls_sideways(page, server, width, screenshot_path):
    page.set_viewport_size({"width": width, "height": 844})
    log_in(page, server)
    for path in APP_PAGES:
        page.goto(server.url(path))
        assert_no_sideways_scroll(page, width)
        name = path.strip("/").replace("/", "-") or "home"
        page.screenshot(path=screenshot_path(f"responsive-{width}-{name}"), full_page=True)
    page.goto(server.url("/requests/"))
    page.locator("a.row-link").first.click()  # the newest completion's page, with its kept body
    expect(page.locator("[data-body-answer]")).to_be_visible()
    assert_no_sideways_scroll(page, width)
    page.screenshot(path=screenshot_path(f"responsive-{width}-completion"), full_page=True)


def test_on_a_phone_the_conversation_comes_first_and_settings_open_in_a_drawer(page, server, screenshot_path):
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, server)
    settings = page.locator("#pg-settings")
    toggle = page.locator("#pg-settings-toggle")
    expect(settings).to_be_hidden()
    expect(toggle).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    thread = page.locator("#pg-thread").bounding_box()
    assert thread["y"] < page.locator(".pg-composer").bounding_box()["y"]
    assert in_viewport(page, "#pg-send")

    toggle.click()
    expect(settings).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#id_chain")).to_be_visible()
    assert_no_sideways_scroll(page, 390)
    page.screenshot(path=screenshot_path("responsive-390-settings-open"))
    page.fill("#id_system", "Answer in one long paragraph.")
    page.locator("#pg-settings [data-pg-settings-close]").click()
    expect(settings).to_be_hidden()
    expect(page.locator(".pg-backdrop")).to_be_hidden()
    toggle.click()  # open again: the page behind is dimmed, and a tap on it closes the drawer
    expect(page.locator(".pg-backdrop")).to_be_visible()
    page.mouse.click(10, 400)  # left of the drawer (360 px wide at the right edge)
    expect(settings).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(page.locator("#id_system")).to_have_value("Answer in one long paragraph.")  # kept

    page.fill("#id_message", "Tell me a long story about the planets, please, with many details.")
    page.click("#pg-send")
    answer = page.locator(".pg-msg.assistant").last
    expect(answer.locator(".pg-timeline")).to_be_visible(timeout=20_000)
    expect(answer.locator(".pg-msg-text").first).not_to_be_empty()
    page.mouse.wheel(0, -10_000)  # scrolled back up the conversation: Send is still on screen
    page.wait_for_timeout(100)
    assert in_viewport(page, "#pg-send")
    assert_no_sideways_scroll(page, 390)
    page.screenshot(path=screenshot_path("responsive-390-answered"), full_page=True)


def test_on_a_wide_screen_the_settings_are_a_column_beside_the_conversation(page, server):
    page.set_viewport_size({"width": 1366, "height": 844})
    log_in(page, server)
    expect(page.locator("#pg-settings")).to_be_visible()
    expect(page.locator("#pg-settings-toggle")).to_be_hidden()
    thread = page.locator("#pg-thread").bounding_box()
    settings = page.locator("#pg-settings").bounding_box()
    assert settings["x"] > thread["x"] + thread["width"] - 1
