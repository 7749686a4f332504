"""Fetching images for protocols that need them inline: only through the guarded image client,
with its own allowlist, a size limit and a check that the bytes are an image; and the engine
fetches only for a step whose protocol needs it, once per request."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from providers.engine.clock import FakeClock
from providers.engine.fallback import EngineDeps, run
from providers.engine.plan import ChainPlan
from providers.engine.types import ChatParams, FailureClass, ImagePart, Message, ProviderError, TextPart
from providers.http_client import shared_client_close
from providers.services.image_fetch import images_resolve
from tests.fakes import FakeUpstream
from tests.gateway.test_images import PNG
from tests.providers.engine_fakes import ScriptedAdapter, ok, step


@pytest.fixture(scope="module")
def image_host():
    with FakeUpstream() as host:
        host.files["/cat.png"] = ("image/png", PNG)
        host.files["/page.png"] = ("image/png", b"<html>not an image</html>")
        yield host


@pytest.fixture(autouse=True)
async def _fresh_clients():
    yield
    await shared_client_close()  # the image client keeps the allowlist it was built with


def picture(url: str) -> tuple[Message, ...]:
    return (Message("user", "look", parts=(TextPart("look"), ImagePart(url))),)


async def test_an_allowed_host_is_fetched_into_inline_data(image_host, settings):
    settings.RANA_ALLOWED_IMAGE_HOSTS = ["127.0.0.1"]
    [message] = await images_resolve(picture(f"http://127.0.0.1:{image_host.port}/cat.png"))
    [image] = message.images
    assert image.media_type == "image/png" and base64.b64decode(image.data) == PNG
    assert message.parts[0] == TextPart("look")


async def test_the_upstream_allowlist_does_not_open_the_image_fetcher(image_host, settings):
    settings.RANA_ALLOWED_UPSTREAM_HOSTS = ["127.0.0.1", "localhost"]
    settings.RANA_ALLOWED_IMAGE_HOSTS = []
    before = image_host.connections_opened
    with pytest.raises(ProviderError) as info:
        # "localhost" resolves to 127.0.0.1: refused by the resolver, at connect time
        await images_resolve(picture(f"http://localhost:{image_host.port}/cat.png"))
    assert info.value.failure_class == "invalid_request"
    assert "loopback" in info.value.message and "image 1 could not be fetched" in info.value.message
    assert "list it in RANA_ALLOWED_IMAGE_HOSTS" in info.value.message  # the allowlist that applies
    assert image_host.connections_opened == before


@pytest.mark.parametrize(
    ("path", "limit", "words"),
    [
        ("/page.png", None, "not a png, jpeg, gif or webp"),
        ("/missing.png", None, "HTTP 404"),
        ("/cat.png", 10, "10-byte limit"),
    ],
)
async def test_a_fetch_that_is_not_an_acceptable_image_is_an_invalid_request(
    image_host, settings, path, limit, words
):
    settings.RANA_ALLOWED_IMAGE_HOSTS = ["127.0.0.1"]
    if limit is not None:
        settings.RANA_IMAGE_MAX_BYTES = limit
    with pytest.raises(ProviderError) as info:
        await images_resolve(picture(f"http://127.0.0.1:{image_host.port}{path}"))
    assert info.value.failure_class == "invalid_request" and words in info.value.message


class Inline(ScriptedAdapter):
    capabilities = frozenset({"images"})
    inline_images = True


class ByReference(ScriptedAdapter):
    capabilities = frozenset({"images"})


async def test_the_engine_fetches_once_and_only_for_a_protocol_that_needs_it():
    fetched: list[tuple[Message, ...]] = []

    async def resolve(messages):
        fetched.append(messages)
        return tuple(
            replace(m, parts=tuple(replace(p, media_type="image/png", data="AAAA") for p in m.images))
            for m in messages
        )

    by_reference, inline = ByReference(), Inline()
    by_reference.script("a", "m", ok("x"))
    walk = ChainPlan(slug="c", chain_id=1, steps=(step(0, "a"),))
    deps = EngineDeps(adapter_for=lambda kind: by_reference, clock=FakeClock(), resolve_images=resolve)
    await run(walk, picture("https://example.com/a.png"), ChatParams(), deps)
    assert fetched == []  # a protocol that takes URLs never waits for a fetch

    inline.script("a", "m", ProviderError(FailureClass.SERVER_ERROR, "503"), ok("x"))
    walk = ChainPlan(slug="c", chain_id=1, steps=(replace(step(0, "a"), retries=1),))
    deps = EngineDeps(adapter_for=lambda kind: inline, clock=FakeClock(), resolve_images=resolve)
    result = await run(walk, picture("https://example.com/a.png"), ChatParams(), deps)
    assert len(fetched) == 1 and [a.outcome for a in result.attempts] == ["server_error", "success"]
