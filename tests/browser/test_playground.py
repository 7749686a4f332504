"""The playground in real Chromium, against a real ASGI server (granian): streaming needs one.

Screenshots go to test-artifacts/screenshots/playground-*.png for review.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.playground.asgi_server import PASSWORD, USERNAME, AsgiServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

PROMPT = "Please list the planets of the solar system from the Sun outwards, with one short fact each."
ANSWER = ".pg-msg.assistant"
TIMELINE = ".pg-timeline"


@pytest.fixture(scope="module")
def server() -> Iterator[AsgiServer]:
    with AsgiServer(tokens_per_s=12) as server:
        yield server


@pytest.fixture
def pg(page: Page, server: AsgiServer) -> Page:
    """A logged-in page on the playground."""
    page.goto(server.url("/accounts/login/?next=/playground/"))
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator(".pg-head h1")).to_have_text("Playground")
    return page


def send(page: Page, message: str = PROMPT) -> None:
    page.fill("#id_message", message)
    page.click("#pg-send")


def last_answer(page: Page):
    return page.locator(ANSWER).last


def test_a_reply_streams_token_by_token_and_ends_with_its_timeline(pg, screenshot_path):
    expect(pg.locator("#id_chain")).to_have_value("demo")  # the default chain is preselected
    pg.fill("#id_system", "You are a concise astronomy tutor.")
    send(pg)
    answer = last_answer(pg)
    expect(answer).to_have_class("pg-msg assistant is-busy is-streaming")
    expect(pg.locator("#pg-stop")).to_be_enabled()
    expect(pg.locator("#pg-send")).to_be_disabled()
    partial = answer.locator("[data-tokens]").inner_text()
    assert partial, "tokens should be visible while the answer is still streaming"
    pg.wait_for_timeout(400)
    pg.screenshot(path=screenshot_path("playground-streaming"), full_page=True)
    expect(answer.locator(TIMELINE)).to_be_visible(timeout=15_000)
    final = last_answer(pg).locator(".pg-msg-text").inner_text()
    assert len(final) > len(partial) and final.startswith(partial.strip()[:10])
    timeline = last_answer(pg).locator(TIMELINE)
    expect(timeline.locator("[data-completion-outcome]")).to_have_attribute(
        "data-completion-outcome", "success"
    )
    expect(timeline).to_contain_text("Answered by step 1")
    expect(timeline.locator(".pg-attempt")).to_have_count(1)
    expect(pg.locator("#pg-send")).to_be_enabled()
    pg.screenshot(path=screenshot_path("playground-answer"), full_page=True)


def test_an_injected_503_on_step_one_shows_the_failed_attempt_and_the_fallback(pg, screenshot_path):
    pg.click("#pg-faults summary")
    pg.select_option("#id_fault-0-failure", "server_error")
    pg.select_option("#id_fault-0-step", "0")
    send(pg, "Say hello in three languages.")
    timeline = last_answer(pg).locator(TIMELINE)
    expect(timeline).to_be_visible(timeout=15_000)
    rows = timeline.locator(".pg-attempt")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-outcome", "server_error")
    expect(rows.nth(0)).to_contain_text("injected")
    expect(rows.nth(0)).to_contain_text("503")
    expect(rows.nth(1)).to_have_attribute("data-outcome", "success")
    expect(timeline.locator("[data-fallback]")).to_have_text("fallback used")
    expect(timeline).to_contain_text("Answered by step 2")
    pg.screenshot(path=screenshot_path("playground-fault-fallback"), full_page=True)


def test_stop_cancels_the_stream_mid_way_and_records_it(pg, server, screenshot_path):
    send(pg)
    answer = last_answer(pg)
    expect(answer).to_have_class("pg-msg assistant is-busy is-streaming")
    run_id = answer.get_attribute("data-run")
    pg.click("#pg-stop")
    stopped = pg.locator(f"#answer-{run_id}")
    expect(stopped.locator(".pg-alert")).to_contain_text("Stopped", timeout=10_000)
    expect(stopped.locator("[data-completion-outcome]")).to_have_attribute(
        "data-completion-outcome", "cancelled"
    )
    expect(stopped.locator(".pg-attempt")).to_have_attribute("data-outcome", "cancelled")
    assert stopped.locator(".pg-msg-text").inner_text()  # the partial answer is kept
    outcome = server.query(
        "SELECT c.outcome FROM providers_completion c JOIN playground_playgroundrun r "
        "ON r.completion_id = c.id WHERE r.id = ?",
        (run_id.replace("-", ""),),
    )
    assert outcome == [("cancelled",)]
    pg.screenshot(path=screenshot_path("playground-stopped"), full_page=True)


def test_an_invalid_parameter_shows_the_field_error(pg, screenshot_path):
    pg.fill("#id_temperature", "7")
    send(pg, "This should not be sent.")
    error = pg.locator("#field-temperature .pg-field-error")
    expect(error).to_have_text("Ensure this value is less than or equal to 2.")
    expect(pg.locator(ANSWER)).to_have_count(0)
    expect(pg.locator("#id_message")).to_have_value("This should not be sent.")
    pg.screenshot(path=screenshot_path("playground-field-error"), full_page=True)


def test_history_reopens_a_run_and_replay_sends_it_again(pg, screenshot_path):
    pg.uncheck("#id_stream")
    send(pg, "Remember the word heliotrope.")
    expect(last_answer(pg).locator(TIMELINE)).to_be_visible(timeout=15_000)
    send(pg, "Which word did I ask you to remember?")
    expect(pg.locator(TIMELINE)).to_have_count(2, timeout=15_000)
    pg.click(".pg-tabs >> text=History")
    pg.screenshot(path=screenshot_path("playground-history"), full_page=True)
    pg.click("#pg-history a:has-text('Which word did I ask')")
    expect(pg.locator(".pg-turn")).to_have_count(2)  # the whole conversation, each with its timeline
    expect(pg.locator(TIMELINE)).to_have_count(2)
    pg.locator(".pg-msg-actions button:has-text('Replay')").last.click()
    expect(pg.locator(".pg-turn")).to_have_count(3)
    expect(pg.locator(TIMELINE)).to_have_count(3, timeout=15_000)


def test_compare_runs_one_prompt_through_two_chains(pg, screenshot_path):
    pg.click(".pg-tabs >> text=Compare")
    pg.select_option("#id_chain", "demo")
    pg.select_option("#id_chain_b", "fast")
    pg.fill("#id_message", "Summarise the benefits of provider fallback in one sentence.")
    pg.click("button:has-text('Compare')")
    columns = pg.locator(".pg-compare-col")
    expect(columns).to_have_count(2)
    for index in range(2):
        expect(columns.nth(index).locator(TIMELINE)).to_be_visible(timeout=15_000)
        expect(columns.nth(index).locator("[data-total-cost]")).to_be_visible()
    pg.screenshot(path=screenshot_path("playground-compare"), full_page=True)


def test_a_multi_turn_conversation_keeps_the_thread_without_console_errors(pg, screenshot_path):
    errors: list[str] = []
    pg.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    for message in ("First question.", "A follow-up question."):
        send(pg, message)
        expect(last_answer(pg).locator(TIMELINE)).to_be_visible(timeout=15_000)
    expect(pg.locator(".pg-msg.user")).to_have_count(2)
    expect(pg.locator(ANSWER)).to_have_count(2)
    assert errors == []
