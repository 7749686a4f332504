"""Fixtures for adapter tests: the fake upstream over a real socket, a guarded client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from providers.engine.types import ChatParams, ChatRequest, Message, ProviderConfig, Timeouts
from providers.http_client import build_client
from tests.fakes import FakeUpstream

TEST_KEYS = {
    "openai": "sk-proj-TESTKEYabcdef0123456789XYZ",
    "openai_compatible": "sk-local-TESTKEY0123456789abc",
    "anthropic": "sk-ant-api03-TESTKEYabcdef0123456789",
    "gemini": "AIzaSyTESTKEY0123456789abcdefghijkl",
    "simulated": "",
}
NO_PARAMS = ChatParams()
FAST = Timeouts(connect_s=1.0, read_s=2.0, first_token_s=2.0)


@pytest.fixture(scope="session")
def _fake_upstream_server() -> Iterator[FakeUpstream]:
    with FakeUpstream(models=("gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash")) as fake:
        yield fake


@pytest.fixture
def fake_upstream(_fake_upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    """The session's fake upstream, with no scripts and no recorded requests."""
    fake = _fake_upstream_server
    fake.reset()
    yield fake
    assert not fake.errors, f"the fake upstream failed internally: {fake.errors}"
    fake.reset()


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    client = build_client(allowed_hosts=["127.0.0.1"])
    yield client
    await client.aclose()


MakeRequest = Callable[..., ChatRequest]


@pytest.fixture
def make_request(fake_upstream: FakeUpstream) -> MakeRequest:
    """A ChatRequest aimed at the fake upstream: make_request("openai", model=..., ...)."""

    def make(
        kind: str,
        *,
        model: str = "fake-model",
        messages: tuple[Message, ...] = (Message("user", "Say hello"),),
        params: ChatParams = NO_PARAMS,
        timeouts: Timeouts = FAST,
        base_url: str | None = None,
        api_key: str | None = None,
        options: dict | None = None,
    ) -> ChatRequest:
        provider = ProviderConfig(
            id=1,
            name=f"fake-{kind}",
            kind=kind,
            base_url=base_url or fake_upstream.base_url_for(kind),
            api_key=TEST_KEYS[kind] if api_key is None else api_key,
            options=options or {},
        )
        return ChatRequest(provider, model, messages, params, timeouts)

    return make


@pytest.fixture
def spans():
    """Traces go to an in-memory exporter for the test (tracing off again after it)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from providers.services import tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.tracing_configure(provider)
    yield exporter
    tracing.tracing_reset()
