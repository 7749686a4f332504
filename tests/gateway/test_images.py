"""Images through the API: content parts carried to the upstream, data: URLs checked, image
URLs that name a non-public host refused before any connection (checked at the socket of a
fake image host), and steps whose model cannot see images skipped without a call."""

from __future__ import annotations

import base64

import pytest
from asgiref.sync import sync_to_async

from providers.models import Attempt, Completion, ModelCapability
from tests.fakes import FakeUpstream
from tests.fakes.images import png_1x1

from .conftest import auth, make_chain

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/v1/chat/completions"


PNG = png_1x1()
PNG_DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


def look(url: str, text: str = "What is in this picture?") -> list[dict]:
    return [
        {
            "role": "user",
            "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}],
        }
    ]


@pytest.fixture(scope="module")
def image_host():
    """Another server on 127.0.0.1 that would serve the image: it must never be connected to."""
    with FakeUpstream() as host:
        host.files["/cat.png"] = ("image/png", PNG)
        yield host


async def post(api, api_key, messages, **fields):
    return await api.post(URL, json={"model": "main", "messages": messages, **fields}, headers=auth(api_key))


async def test_a_data_url_image_reaches_the_upstream_as_an_image_part(api, api_key, upstream):
    response = await post(api, api_key, look(PNG_DATA_URL))
    assert response.status_code == 200, response.text
    [sent] = upstream.requests[0].json["messages"]
    assert sent["content"] == [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
    ]


async def test_a_public_image_url_is_passed_by_reference_not_fetched(api, api_key, upstream):
    url = "https://images.example.com/cat.png"
    messages = look(url)
    messages[0]["content"][1]["image_url"]["detail"] = "low"
    response = await post(api, api_key, messages)
    assert response.status_code == 200, response.text
    part = upstream.requests[0].json["messages"][0]["content"][1]
    assert part == {"type": "image_url", "image_url": {"url": url, "detail": "low"}}


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ("127.0.0.1:{port}", "loopback"),
        ("localhost:{port}", "local name"),
        ("2130706433:{port}", "loopback"),  # 127.0.0.1 spelled as one decimal number
        ("0x7f.1:{port}", "loopback"),
        ("[::ffff:127.0.0.1]:{port}", "loopback"),
        ("169.254.169.254", "metadata"),
        ("metadata.google.internal", "local name"),
        ("10.1.2.3", "private"),
    ],
)
async def test_an_image_url_naming_a_non_public_host_is_refused_without_a_connection(
    api, api_key, upstream, image_host, host, words
):
    before = image_host.connections_opened
    url = f"http://{host.format(port=image_host.port)}/cat.png"
    response = await post(api, api_key, look(url))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages[0].content[1].image_url.url"
    assert "image URL refused" in error["message"] and words in error["message"]
    assert image_host.connections_opened == before  # checked at the image host's socket
    assert upstream.requests == []  # nor was it handed to a provider


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("data:image/jpeg;base64," + base64.b64encode(PNG).decode(), "is image/png, not image/jpeg"),
        ("data:image/svg+xml;base64," + base64.b64encode(b"<svg/>").decode(), "not supported"),
        ("data:image/png;base64,not*base64!", "not valid base64"),
        ("data:image/png;base64," + base64.b64encode(b"plain text").decode(), "not a png, jpeg"),
        ("data:image/png,rawbytes", "must look like"),
        ("file:///etc/passwd", "http(s) URL or a data:image"),
        ("ftp://example.com/a.png", "http(s) URL or a data:image"),
        ("https://user:pw@example.com/a.png", "credentials"),
    ],
)
async def test_bad_images_are_a_400_naming_the_part(api, api_key, upstream, url, words):
    response = await post(api, api_key, look(url))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"].startswith("messages[0].content[1]") and words in error["message"]
    assert upstream.requests == []


async def test_an_image_over_the_size_limit_is_refused(api, api_key, upstream, settings):
    settings.RANA_IMAGE_MAX_BYTES = len(PNG) - 1
    response = await post(api, api_key, look(PNG_DATA_URL))
    assert response.status_code == 400
    assert f"{len(PNG) - 1:,}-byte limit" in response.json()["error"]["message"]
    assert upstream.requests == []


async def test_images_are_accepted_in_user_messages_only(api, api_key, upstream):
    messages = [
        {"role": "system", "content": [{"type": "image_url", "image_url": {"url": PNG_DATA_URL}}]},
        {"role": "user", "content": "hi"},
    ]
    response = await post(api, api_key, messages)
    assert response.status_code == 400
    assert "user messages only" in response.json()["error"]["message"]


async def test_a_step_whose_model_cannot_see_images_is_skipped_without_a_call(
    api, api_key, upstream, provider
):
    await sync_to_async(ModelCapability.objects.create)(
        provider_kind="openai_compatible", model="blind", images=False, as_of="2025-11-20"
    )
    await sync_to_async(make_chain)("eyes", ["blind", "primary"], provider)
    response = await post(api, api_key, look(PNG_DATA_URL), model="eyes")
    assert response.status_code == 200, response.text
    assert [r.model for r in upstream.requests] == ["primary"]  # nothing sent for "blind"
    rana = response.json()["rana"]
    skipped = rana["attempts"][0]
    assert skipped["outcome"] == "capability_skipped"
    assert "images" in skipped["error"] and "blind" in skipped["error"]
    completion = await Completion.objects.aget(id=rana["request_id"])
    assert completion.needs == "images" and completion.attempt_count == 1
    needs = [a.needs async for a in Attempt.objects.filter(completion_id=completion.id)]
    assert needs == ["images", "images"]


async def test_a_chain_with_no_step_that_can_see_images_is_a_400_naming_it(api, api_key, upstream, provider):
    await sync_to_async(ModelCapability.objects.create)(
        provider_kind="openai_compatible", model="blind", images=False, as_of="2025-11-20"
    )
    await sync_to_async(make_chain)("blind-only", ["blind"], provider)
    response = await post(api, api_key, look(PNG_DATA_URL), model="blind-only")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_capability" and "images" in error["message"]
    assert upstream.requests == []


async def test_a_text_request_still_goes_to_a_model_that_cannot_see_images(api, api_key, upstream, provider):
    await sync_to_async(ModelCapability.objects.create)(
        provider_kind="openai_compatible", model="blind", images=False, as_of="2025-11-20"
    )
    await sync_to_async(make_chain)("blind-text", ["blind"], provider)
    response = await post(api, api_key, [{"role": "user", "content": "hi"}], model="blind-text")
    assert response.status_code == 200, response.text
    assert [r.model for r in upstream.requests] == ["blind"]


async def test_a_gemini_step_gets_a_fetched_url_image_inline(api, api_key, upstream, image_host, settings):
    from .test_tools import provider_on_the_fake

    settings.RANA_ALLOWED_IMAGE_HOSTS = ["127.0.0.1"]  # the operator allows this image host
    gemini = await sync_to_async(provider_on_the_fake)(
        upstream, name="gem", kind="gemini", key="AIza" + "g" * 35
    )
    await sync_to_async(make_chain)("gem-eyes", ["gemini-x"], gemini)
    before = image_host.connections_opened
    url = f"http://127.0.0.1:{image_host.port}/cat.png"
    response = await post(api, api_key, look(url), model="gem-eyes")
    assert response.status_code == 200, response.text
    parts = upstream.requests[0].json["contents"][0]["parts"]
    assert parts[0] == {"text": "What is in this picture?"}
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}}
    assert image_host.connections_opened == before + 1


async def test_an_anthropic_step_gets_a_data_url_as_base64_and_a_url_by_reference(api, api_key, upstream):
    from .test_tools import provider_on_the_fake

    claude = await sync_to_async(provider_on_the_fake)(
        upstream, name="claude", kind="anthropic", key="sk-ant-" + "k" * 30
    )
    await sync_to_async(make_chain)("claude-eyes", ["claude-x"], claude)
    messages = look(PNG_DATA_URL)
    messages[0]["content"].append({"type": "image_url", "image_url": {"url": "https://example.com/b.png"}})
    response = await post(api, api_key, messages, model="claude-eyes")
    assert response.status_code == 200, response.text
    [turn] = upstream.requests[0].json["messages"]
    assert turn["content"] == [
        {"type": "text", "text": "What is in this picture?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": PNG_DATA_URL.split(",")[1]},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/b.png"}},
    ]
