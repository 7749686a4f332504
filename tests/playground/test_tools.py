"""Tools, tool results typed by hand, response formats and images in the playground: against
the fake OpenAI upstream on 127.0.0.1 (the simulated provider cannot serve any of them, so a
simulated step is skipped, which the timeline says in words)."""

from __future__ import annotations

import base64
import json
import re
from types import SimpleNamespace

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import AsyncClient
from django.urls import reverse

from playground.forms import TOOLS_EXAMPLE
from playground.models import PlaygroundRun
from playground.templatetags.playground_tags import attempt_words
from providers.models import ChainStep, FallbackChain, ModelCapability, Provider
from tests.fakes import FakeToolCall, Fault
from tests.fakes.images import png_1x1
from tests.playground.asgi_server import form_data
from tests.playground.test_stream import parse_sse

pytestmark = pytest.mark.django_db(transaction=True)
HX = {"HTTP_HX_REQUEST": "true"}
TOOLS = json.dumps(TOOLS_EXAMPLE)
CALL = FakeToolCall("get_weather", {"city": "Paris"}, id="call_w1")
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temperature_c": {"type": "number"}},
    "required": ["city"],
}


@pytest.fixture
def fake_chains(chains, upstream) -> None:
    """ "tools": fake/primary then fake/backup; "mixed": simulated first/m1, then fake/primary."""
    fake = Provider(name="fake", kind="openai_compatible", base_url=upstream.base_url_for("openai"))
    fake.set_api_key("sk-local-PLAYGROUNDKEY0123456789")
    fake.save()
    tools = FallbackChain.objects.create(name="Tools", slug="tools", default_retries=0, backoff_base_s=0)
    ChainStep.objects.create(chain=tools, position=0, provider=fake, model="primary")
    ChainStep.objects.create(chain=tools, position=1, provider=fake, model="backup")
    mixed = FallbackChain.objects.create(name="Mixed", slug="mixed", default_retries=0, backoff_base_s=0)
    ChainStep.objects.create(chain=mixed, position=0, provider=Provider.objects.get(name="first"), model="m1")
    ChainStep.objects.create(chain=mixed, position=1, provider=fake, model="primary")


def field_html(html: str, name: str) -> str:
    match = re.search(rf'<div class="[^"]*" id="field-{name}".*?</div>', html, re.S)
    assert match, f"no field {name}"
    return match.group(0)


def send(client, **fields):
    return client.post(reverse("playground:send"), form_data(**fields))


# --- form errors -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tools", "words"),
    [
        ('[{"type": "function",', "This is not valid JSON (line 1, column"),
        ('{"type": "function"}', "tools: must be a list of function tools"),
        ('[{"type": "function", "function": {"parameters": {}}}]', "tools[0].function.name: is required"),
        (
            '[{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}]',
            "tools[0].function.parameters is not a valid JSON Schema",
        ),
    ],
)
def test_bad_tools_are_an_error_on_the_tools_field(user_client, chains, tools, words):
    response = user_client.post(reverse("playground:send"), form_data(tools=tools), **HX)
    assert response.status_code == 200 and response["HX-Retarget"] == "#pg-form"
    field = field_html(response.content.decode(), "tools")
    assert "has-error" in field and words in field
    assert not PlaygroundRun.objects.exists()


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ("", "Give the JSON schema the answer must follow"),
        ("{not json", "This is not valid JSON"),
        ('{"type": "objekt"}', "The schema is not a valid JSON Schema"),
        ("[1, 2]", "The schema must be a JSON object"),
    ],
)
def test_a_bad_schema_is_an_error_on_the_schema_field(user_client, chains, schema, words):
    data = form_data(response_format="json_schema", schema=schema)
    response = user_client.post(reverse("playground:send"), data, **HX)
    field = field_html(response.content.decode(), "schema")
    assert "has-error" in field and words in field
    assert not PlaygroundRun.objects.exists()


def test_an_upload_that_is_not_an_image_is_a_field_error(user_client, chains):
    upload = SimpleUploadedFile("notes.png", b"just some text, not a picture", content_type="image/png")
    response = user_client.post(reverse("playground:send"), {**form_data(), "image": upload}, **HX)
    field = field_html(response.content.decode(), "image")
    assert "PNG, JPEG, GIF or WebP" in field and "this file is not one" in field
    assert not PlaygroundRun.objects.exists()


def test_an_oversized_image_is_a_field_error(user_client, chains, settings):
    settings.RANA_IMAGE_MAX_BYTES = 40
    upload = SimpleUploadedFile("big.png", png_1x1() + b"\0" * 100, content_type="image/png")
    response = user_client.post(reverse("playground:send"), {**form_data(), "image": upload}, **HX)
    field = field_html(response.content.decode(), "image")
    assert "the limit is 40 bytes" in field
    assert not PlaygroundRun.objects.exists()


def test_a_tool_choice_without_tools_is_not_sent(user_client, chains):
    send(user_client, stream="", tool_choice="required")
    assert PlaygroundRun.objects.get().params == {}


# --- images ------------------------------------------------------------------------------
def test_an_attached_image_reaches_the_upstream_as_an_image_url_part(user_client, fake_chains, upstream):
    upstream.script("openai", [Fault.ok("A tiny red square.")])
    upload = SimpleUploadedFile("dot.png", png_1x1(), content_type="image/png")
    data = {**form_data(chain="tools", stream="", message="What is in this picture?"), "image": upload}
    response = user_client.post(reverse("playground:send"), data)
    assert response.status_code == 302
    data_url = "data:image/png;base64," + base64.b64encode(png_1x1()).decode()
    [request] = upstream.requests
    assert request.json["messages"][-1]["content"] == [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": data_url}},
    ]
    run = PlaygroundRun.objects.get()
    assert run.answer == "A tiny red square." and run.title == "What is in this picture? (with an image)"
    page = user_client.get(response["Location"]).content.decode()
    assert page.count(data_url) == 1 and f'<img class="pg-thumb" src="{data_url}"' in page
    history = user_client.get(reverse("playground:history")).content.decode()
    assert "base64" not in history and "What is in this picture? (with an image)" in history


def blind(*models: str, **lacks: bool) -> None:
    """Capability-table rows saying these simulated models lack what `lacks` names."""
    for model in models:
        ModelCapability.objects.create(provider_kind="simulated", model=model, as_of="2025-11-20", **lacks)


def test_a_step_that_cannot_serve_images_is_skipped_and_said_so(user_client, fake_chains, upstream):
    blind("m1", images=False)
    upstream.script("openai", [Fault.ok("A dot.")])
    upload = SimpleUploadedFile("dot.png", png_1x1(), content_type="image/png")
    response = user_client.post(
        reverse("playground:send"), {**form_data(chain="mixed", stream=""), "image": upload}
    )
    page = user_client.get(response["Location"]).content.decode()
    assert 'data-outcome="capability_skipped"' in page and 'data-outcome="success"' in page
    words = re.findall(r"data-words>([^<]*)<", page)
    assert words == ["skipped: model m1 cannot serve images (the capability table lists model m1 without it)"]
    assert len(upstream.requests) == 1 and "A dot." in page


def test_a_chain_whose_every_step_is_skipped_says_why(user_client, chains):
    blind("m1", "m2", tools=False)
    send(user_client, stream="", tools=TOOLS)
    run = PlaygroundRun.objects.get()
    assert run.outcome == "failed"
    assert run.error_message.startswith("No step of this chain can serve this request (it needs tool calls)")
    page = user_client.get(reverse("playground:run_detail", args=[run.pk])).content.decode()
    assert re.findall(r"data-words>([^<]*)<", page) == [
        "skipped: model m1 cannot serve tool calls (the capability table lists model m1 without it)",
        "skipped: model m2 cannot serve tool calls (the capability table lists model m2 without it)",
    ]


# --- tool calls --------------------------------------------------------------------------
def test_a_tool_call_answered_by_hand_continues_the_thread(user_client, fake_chains, upstream):
    upstream.script("openai", [Fault.tool_calls([CALL]), Fault.ok("It is 18 °C in Paris.")])
    response = send(user_client, chain="tools", stream="", message="Weather in Paris?", tools=TOOLS)
    first = PlaygroundRun.objects.get()
    assert first.tool_calls == [
        {
            "id": "call_w1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": CALL.arguments},
        }
    ]
    page = user_client.get(response["Location"]).content.decode()
    assert 'data-tool-call="call_w1"' in page and '<code class="pg-tool-name">get_weather</code>' in page
    assert "{\n  &quot;city&quot;: &quot;Paris&quot;\n}" in page  # the arguments, pretty-printed
    assert f'id="pg-tools-{first.pk}"' in page and "Send results" in page
    assert "get_weather" in field_html(page, "tools")  # the next turn keeps the tools

    url = reverse("playground:tool_results", args=[first.pk])
    response = user_client.post(url, {"result_0": '{"temp_c": 18}'})
    second = PlaygroundRun.objects.exclude(pk=first.pk).get()
    assert response["Location"] == f"/playground/runs/{second.pk}/"
    assert second.parent_id == first.pk and second.answer == "It is 18 °C in Paris."
    sent = upstream.requests[1].json
    assert sent["tools"] == TOOLS_EXAMPLE and sent["tool_choice"] == "auto"
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool"]
    assert sent["messages"][1]["tool_calls"][0]["id"] == "call_w1" and sent["messages"][1]["content"] is None
    assert sent["messages"][2] == {"role": "tool", "content": '{"temp_c": 18}', "tool_call_id": "call_w1"}

    page = user_client.get(response["Location"]).content.decode()
    assert page.count('class="pg-turn"') == 2 and "It is 18 °C in Paris." in page
    assert "data-tool-results" in page and "&quot;temp_c&quot;: 18" in page
    assert f'id="pg-tools-{first.pk}"' not in page  # answered: only the last turn offers the form


def test_a_missing_tool_result_is_a_field_error(user_client, fake_chains, upstream):
    upstream.script("openai", [Fault.tool_calls([CALL])])
    send(user_client, chain="tools", stream="", tools=TOOLS)
    run = PlaygroundRun.objects.get()
    response = user_client.post(reverse("playground:tool_results", args=[run.pk]), {"result_0": ""}, **HX)
    html = response.content.decode()
    assert response["HX-Retarget"] == f"#pg-tools-{run.pk}" and response["HX-Reswap"] == "outerHTML"
    assert "Write what get_weather returned" in html and "<html" not in html
    page = user_client.post(reverse("playground:tool_results", args=[run.pk]), {"result_0": ""})
    html = page.content.decode()  # without JavaScript: the run's page, the error on its field
    assert page.status_code == 200 and "<html" in html and "Write what get_weather returned" in html
    assert PlaygroundRun.objects.count() == 1 and len(upstream.requests) == 1


def test_a_run_without_tool_calls_has_none_to_answer(user_client, chains):
    send(user_client, stream="")
    run = PlaygroundRun.objects.get()
    assert (
        user_client.post(reverse("playground:tool_results", args=[run.pk]), {"result_0": "x"}).status_code
        == 404
    )


async def test_streamed_tool_calls_are_put_back_together_and_shown(user, fake_chains, upstream):
    second = FakeToolCall("get_weather", {"city": "Lyon"}, id="call_w2")
    upstream.script("openai", [Fault.tool_calls([CALL, second], arg_pieces=4)])
    client = AsyncClient()
    await client.aforce_login(user)
    data = form_data(chain="tools", tools=TOOLS, message="Paris and Lyon?")
    await client.post(reverse("playground:send"), data, headers={"HX-Request": "true"})
    run = await PlaygroundRun.objects.aget()
    response = await client.get(reverse("playground:run_stream", args=[run.pk]))
    events = parse_sse(b"".join([chunk async for chunk in response.streaming_content]))
    assert upstream.requests[0].json["stream"] is True
    done = events[-1][1]
    assert events[-1][0] == "done"
    assert 'data-tool-call="call_w1"' in done and 'data-tool-call="call_w2"' in done
    assert "&quot;city&quot;: &quot;Lyon&quot;" in done and f'id="pg-tools-{run.pk}"' in done
    await run.arefresh_from_db()
    assert [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in run.tool_calls
    ] == [
        ("call_w1", "get_weather", {"city": "Paris"}),
        ("call_w2", "get_weather", {"city": "Lyon"}),
    ]


# --- response formats --------------------------------------------------------------------
def test_a_json_answer_is_pretty_printed(user_client, fake_chains, upstream):
    upstream.script("openai", [Fault.json({"city": "Paris", "temperature_c": 18})])
    response = send(user_client, chain="tools", stream="", response_format="json_object")
    run = PlaygroundRun.objects.get()
    assert upstream.requests[0].json["response_format"] == {"type": "json_object"}
    page = user_client.get(response["Location"]).content.decode()
    pretty = "{\n  &quot;city&quot;: &quot;Paris&quot;,\n  &quot;temperature_c&quot;: 18\n}"
    assert f'<pre class="pg-json pg-json-answer" data-json-answer>{pretty}</pre>' in page
    assert run.answer == '{"city": "Paris", "temperature_c": 18}'


def test_an_answer_that_breaks_the_schema_falls_back_and_the_timeline_says_so(
    user_client, fake_chains, upstream
):
    upstream.script("openai", [Fault.json({"city": 5})], model="primary")
    upstream.script("openai", [Fault.json({"city": "Paris"})], model="backup")
    data = form_data(chain="tools", stream="", response_format="json_schema", schema=json.dumps(SCHEMA))
    response = user_client.post(reverse("playground:send"), data)
    sent = upstream.requests[0].json["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}
    page = user_client.get(response["Location"]).content.decode()
    assert 'data-outcome="bad_response"' in page and "data-fallback" in page
    assert re.findall(r"data-words>([^<]*)<", page) == [
        "answer broke the JSON schema at /city: 5 is not of type &#x27;string&#x27; — fell back to step 2"
    ]
    assert "{\n  &quot;city&quot;: &quot;Paris&quot;\n}</pre>" in page
    assert '"json_schema"' not in field_html(page, "schema") and "temperature_c" in field_html(page, "schema")


def test_timeline_words_say_what_followed():
    def attempt(position: int, outcome: str, message: str) -> SimpleNamespace:
        return SimpleNamespace(
            step_position=position, outcome=outcome, error_message=message, model="m", provider_name="p"
        )

    broke = attempt(0, "bad_response", "the answer breaks the response schema at (the root): 'x' is required")
    assert attempt_words(broke, attempt(0, "success", "")).endswith("at the root: 'x' is required — retried")
    assert attempt_words(broke, None).endswith("— no step was left to try")
    bad = attempt(
        1, "bad_response", "the answer is not valid JSON, though a JSON response format was asked for"
    )
    assert attempt_words(bad, attempt(2, "success", "")).startswith(
        "bad answer: the answer is not valid JSON"
    )
    table = attempt(
        0, "capability_skipped", "cannot serve images and json_schema: model m lacks it (capability table)"
    )
    assert attempt_words(table) == (
        "skipped: model m cannot serve images and a JSON schema answer (per the capability table)"
    )
    assert attempt_words(attempt(0, "capability_skipped", "Gemini cannot take that tool_choice")) == (
        "skipped: Gemini cannot take that tool_choice"
    )
    assert attempt_words(attempt(0, "server_error", "HTTP 503")) == ""
