"""In real Chromium: a run's page with its long prompt cut short, copy buttons, the run as code,
the fault fields reset after their request, and the system's dark mode.

Screenshots go to test-artifacts/screenshots/playground-run-*.png for review.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.playground.asgi_server import PASSWORD, USERNAME, AsgiServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

LONG_PROMPT = "\n".join(f"Line {i}: tell me one more thing about the planets." for i in range(40))


@pytest.fixture(scope="module")
def server() -> Iterator[AsgiServer]:
    with AsgiServer(tokens_per_s=200) as server:
        yield server


@pytest.fixture
def pg(page: Page, server: AsgiServer) -> Page:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    page.goto(server.url("/accounts/login/?next=/playground/"))
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator(".pg-head h1")).to_have_text("Playground")
    return page


def test_a_long_prompt_is_cut_short_its_answer_copies_and_faults_reset(pg, screenshot_path):
    pg.locator("#pg-faults summary").click()
    pg.select_option("#id_fault-0-failure", "server_error")
    pg.select_option("#id_fault-0-step", "0")
    pg.fill("#id_message", LONG_PROMPT)
    pg.click("#pg-send")
    answer = pg.locator(".pg-msg.assistant").last
    expect(answer.locator(".pg-timeline")).to_be_visible(timeout=20_000)
    expect(pg.locator("#id_fault-0-failure")).to_have_value("")  # for that request only

    prompt = pg.locator(".pg-msg.user .pg-msg-text").last
    expect(prompt).to_have_class("pg-msg-text is-collapsed")
    short = prompt.bounding_box()["height"]
    pg.locator(".pg-msg.user .pg-show-all").last.click()
    expect(prompt).not_to_have_class("pg-msg-text is-collapsed")
    assert prompt.bounding_box()["height"] > short * 1.5

    answer.get_by_role("button", name="Copy answer").click()
    expect(answer.get_by_role("button", name="Copied")).to_be_visible()
    copied = pg.evaluate("navigator.clipboard.readText()")
    assert copied == answer.locator(".pg-msg-text").first.inner_text()

    answer.get_by_role("button", name="Copy id").click()
    request_id = pg.evaluate("navigator.clipboard.readText()")
    link = answer.locator("[data-completion-link]")
    assert link.get_attribute("href") == f"/completions/{request_id}/"

    answer.locator(".pg-code-view summary").click()
    curl = answer.locator("[data-code=curl]")
    expect(curl).to_contain_text("/v1/chat/completions")
    expect(curl).to_contain_text("rana_YOUR_GATEWAY_KEY")
    pg.screenshot(path=screenshot_path("playground-run-code"), full_page=True)

    link.click()  # the completion page of this very request
    pg.wait_for_url(f"**/completions/{request_id}/")


def test_the_app_follows_the_systems_dark_mode(pg, screenshot_path):
    def background(selector: str) -> str:
        return pg.evaluate(f"getComputedStyle(document.querySelector('{selector}')).backgroundColor")

    light = background("body"), background(".pg-composer")
    pg.emulate_media(color_scheme="dark")
    dark = background("body"), background(".pg-composer")
    assert dark != light
    assert dark == ("rgb(18, 22, 28)", "rgb(27, 33, 41)")
    pg.screenshot(path=screenshot_path("playground-run-dark"), full_page=True)
