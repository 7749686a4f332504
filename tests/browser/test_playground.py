"""The playground in real Chromium, against a real ASGI server (granian): streaming needs one.

Screenshots go to test-artifacts/screenshots/playground-*.png for review. Besides the
simulated chains, a "tools" chain answers from the fake OpenAI upstream on 127.0.0.1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.fakes import FakeToolCall, FakeUpstream, Fault
from tests.fakes.routes import RecordedRequest
from tests.playground.asgi_server import PASSWORD, USERNAME, AsgiServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

PROMPT = "Please list the planets of the solar system from the Sun outwards, with one short fact each."
ANSWER = ".pg-msg.assistant"
TIMELINE = ".pg-timeline"


TOOLS_SEED = """
tools_provider = Provider(name="fake-openai", kind="openai_compatible", base_url={base_url!r})
tools_provider.set_api_key("sk-local-BROWSERKEY0123456789abcdef")
tools_provider.save()
tools = FallbackChain.objects.create(name="Tools", slug="tools", default_retries=0, backoff_base_s=0.1)
ChainStep.objects.create(chain=tools, position=0, provider=tools_provider, model="primary")
"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(models=("primary",)) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(fake: FakeUpstream) -> Iterator[AsgiServer]:
    seed = TOOLS_SEED.format(base_url=fake.base_url_for("openai"))
    with AsgiServer(tokens_per_s=12, extra_seed=seed) as server:
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


def test_a_tool_defined_from_the_example_is_called_answered_by_hand_and_the_model_goes_on(
    pg, fake, screenshot_path
):
    def weather(request: RecordedRequest) -> Fault:
        if request.messages[-1]["role"] == "tool":
            return Fault.ok("It is 18 °C and sunny in Paris.")
        return Fault.tool_calls([FakeToolCall("get_weather", {"city": "Paris"}, id="call_w1")])

    fake.reset()
    fake.set_default(weather)
    errors: list[str] = []
    pg.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    pg.select_option("#id_chain", "tools")
    pg.click("#pg-tools-box > summary")
    pg.click("#pg-tools-example > summary")
    pg.click("#pg-tools-fill")
    expect(pg.locator("#id_tools")).to_have_value(re.compile('"name": "get_weather"'))
    send(pg, "What is the weather in Paris?")

    asked = last_answer(pg)
    call = asked.locator("[data-tool-call]")
    expect(call).to_contain_text("get_weather", timeout=15_000)
    expect(call.locator("pre")).to_have_text('{\n  "city": "Paris"\n}')
    pg.screenshot(path=screenshot_path("playground-tool-call"), full_page=True)
    results = asked.locator("[data-pg-tools]")
    results.locator("textarea").fill('{"temperature_c": 18, "sky": "sunny"}')
    results.locator("button:has-text('Send results')").click()

    expect(pg.locator(".pg-turn")).to_have_count(2)
    expect(pg.locator("[data-tool-results]")).to_contain_text('"temperature_c": 18')
    final = last_answer(pg)
    expect(final.locator(TIMELINE)).to_be_visible(timeout=15_000)
    expect(final.locator(".pg-msg-text")).to_have_text("It is 18 °C and sunny in Paris.")
    expect(pg.locator("[data-pg-tools]")).to_have_count(0)  # answered: no form left to answer
    sent = fake.requests[-1].json
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool"]
    assert sent["messages"][-1] == {
        "role": "tool",
        "content": '{"temperature_c": 18, "sky": "sunny"}',
        "tool_call_id": "call_w1",
    }
    assert sent["tools"][0]["function"]["name"] == "get_weather" and sent["tool_choice"] == "auto"
    pg.screenshot(path=screenshot_path("playground-tool-answered"), full_page=True)

    pg.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing wider than the screen
    pg.wait_for_timeout(200)
    wide = pg.evaluate(
        """[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 391)
           .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))
           .slice(0, 8)"""
    )
    assert pg.evaluate("document.documentElement.scrollWidth") <= 390, wide
    pg.screenshot(path=screenshot_path("playground-tool-narrow"), full_page=True)
    assert errors == []
    fake.reset()
