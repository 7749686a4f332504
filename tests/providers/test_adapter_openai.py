"""The OpenAI adapter against the fake upstream: exact request, usage, error mapping."""

from __future__ import annotations

import pytest

from providers.engine.types import ChatParams, FailureClass, Message
from tests.fakes import FakeUsage, Fault

from .adapter_calls import call, failure, stream_until_failure, text_of
from .conftest import TEST_KEYS

MESSAGES = (
    Message("system", "Be brief."),
    Message("user", "Hi"),
    Message("assistant", "Hello"),
    Message("user", "2+2?"),
)
ALL_PARAMS = ChatParams(
    temperature=0.2,
    max_tokens=50,
    top_p=0.9,
    stop=("\n\n", "END"),
    seed=7,
    presence_penalty=0.1,
    frequency_penalty=0.3,
    user="user-42",
)


async def test_complete_sends_the_exact_body_and_bearer_key(fake_upstream, http_client, make_request):
    await call(
        make_request("openai", model="gpt-4o-mini", messages=MESSAGES, params=ALL_PARAMS),
        http_client,
        stream=False,
    )
    sent = fake_upstream.last_request
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {TEST_KEYS['openai']}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.json == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "2+2?"},
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 50,
        "stop": ["\n\n", "END"],
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.3,
        "user": "user-42",
    }


async def test_unset_parameters_are_omitted(fake_upstream, http_client, make_request):
    await call(make_request("openai"), http_client, stream=False)
    assert fake_upstream.last_request.json == {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "Say hello"}],
    }


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ("o1-mini", "max_completion_tokens"),
        ("o3", "max_completion_tokens"),
        ("o4-mini", "max_completion_tokens"),
        ("gpt-5-nano", "max_completion_tokens"),
        ("gpt-4o", "max_tokens"),
        ("llama3.1:8b", "max_tokens"),
    ],
)
async def test_reasoning_models_get_max_completion_tokens(
    model, field, fake_upstream, http_client, make_request
):
    await call(
        make_request("openai", model=model, params=ChatParams(max_tokens=64)), http_client, stream=False
    )
    body = fake_upstream.last_request.json
    assert body[field] == 64
    assert {"max_tokens", "max_completion_tokens"} - {field} & body.keys() == set()


async def test_complete_reads_text_ids_and_usage_with_cached_and_reasoning(
    fake_upstream, http_client, make_request
):
    usage = FakeUsage(input=120, output=40, cached=100, reasoning=25)
    fake_upstream.script("openai", [Fault.ok("Four.", usage=usage, finish="length")])
    response = await call(make_request("openai", model="gpt-4o-mini"), http_client, stream=False)
    assert (response.text, response.finish_reason, response.model) == ("Four.", "length", "gpt-4o-mini")
    assert response.response_id.startswith("chatcmpl-")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (120, 40)
    assert (response.usage.cached_tokens, response.usage.reasoning_tokens) == (100, 25)


async def test_stream_asks_for_usage_and_yields_deltas_then_usage(fake_upstream, http_client, make_request):
    usage = FakeUsage(input=30, output=9, cached=10, reasoning=4)
    fake_upstream.script("openai", [Fault.ok("One two three", usage=usage)])
    events = await call(make_request("openai"), http_client, stream=True)
    body = fake_upstream.last_request.json
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert fake_upstream.last_request.headers["accept"] == "text/event-stream"
    assert [e.text for e in events[:-1]] == ["One", " two", " three"]
    final = events[-1]
    assert (final.text, final.finish_reason) == ("", "stop")
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cached_tokens) == (30, 9, 10)
    assert final.usage.reasoning_tokens == 4


async def test_compatible_server_without_key_gets_no_authorization_header(
    fake_upstream, http_client, make_request
):
    response = await call(make_request("openai_compatible", api_key=""), http_client, stream=False)
    assert response.text == "Hello from the fake upstream."
    assert "authorization" not in fake_upstream.last_request.headers


async def test_stream_usage_can_be_switched_off_for_old_compatible_servers(
    fake_upstream, http_client, make_request
):
    await call(make_request("openai_compatible", options={"stream_usage": False}), http_client, stream=True)
    assert "stream_options" not in fake_upstream.last_request.json


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(
    ("fault", "expected", "status"),
    [
        (Fault.error("insufficient_quota"), FailureClass.QUOTA_EXHAUSTED, 429),
        (Fault.error("rate_limited"), FailureClass.RATE_LIMITED, 429),
        (Fault.error("auth"), FailureClass.AUTH_ERROR, 401),
        (Fault.error("permission"), FailureClass.AUTH_ERROR, 403),
        (Fault.error("context_length"), FailureClass.CONTEXT_LENGTH, 400),
        (Fault.error("content_filter"), FailureClass.CONTENT_FILTER, 400),
        (Fault.error("bad_request"), FailureClass.INVALID_REQUEST, 400),
        (Fault.error("not_found"), FailureClass.INVALID_REQUEST, 404),
        (Fault.error("bad_request", status=422), FailureClass.INVALID_REQUEST, 422),
        (Fault.error("timeout"), FailureClass.TIMEOUT, 408),
        (Fault.error("server_error", status=409), FailureClass.SERVER_ERROR, 409),
        (Fault.error("server_error"), FailureClass.SERVER_ERROR, 500),
        (Fault.error("overloaded"), FailureClass.SERVER_ERROR, 503),
        (
            Fault.status(502, "<html>Bad Gateway</html>", content_type="text/html"),
            FailureClass.SERVER_ERROR,
            502,
        ),
    ],
    ids=lambda v: v.error_name or str(v.status_code) if isinstance(v, Fault) else None,
)
async def test_error_mapping(fault, expected, status, stream, fake_upstream, http_client, make_request):
    fake_upstream.script("openai", [fault])
    error = await failure(make_request("openai"), http_client, stream=stream)
    assert (error.failure_class, error.status) == (expected, status)


async def test_compatible_server_error_as_a_plain_string_is_mapped(fake_upstream, http_client, make_request):
    fake_upstream.script(
        "openai", [Fault.status(404, '{"error": "model \\"llama9\\" not found, try pulling it first"}')]
    )
    error = await failure(make_request("openai_compatible"), http_client, stream=False)
    assert error.failure_class == FailureClass.INVALID_REQUEST
    assert "try pulling it first" in error.message


async def test_auth_error_echoing_the_key_is_masked(fake_upstream, http_client, make_request):
    fake_upstream.script("openai", [Fault.error("auth")])
    error = await failure(make_request("openai"), http_client, stream=False)
    assert TEST_KEYS["openai"] not in str(error)
    assert "Incorrect API key provided: ••••9XYZ" in error.message


async def test_content_filter_finish_without_text_is_content_filter(fake_upstream, http_client, make_request):
    fake_upstream.script(
        "openai", [Fault.ok("", finish="content_filter"), Fault.ok("", finish="content_filter")]
    )
    assert (
        await failure(make_request("openai"), http_client, stream=False)
    ).failure_class == FailureClass.CONTENT_FILTER
    assert (
        await failure(make_request("openai"), http_client, stream=True)
    ).failure_class == FailureClass.CONTENT_FILTER


async def test_content_filter_finish_after_some_text_is_a_normal_answer(
    fake_upstream, http_client, make_request
):
    fake_upstream.script("openai", [Fault.ok("Partial", finish="content_filter")])
    response = await call(make_request("openai"), http_client, stream=False)
    assert (response.text, response.finish_reason) == ("Partial", "content_filter")


async def test_mid_stream_rate_limit_error_event_is_rate_limited(fake_upstream, http_client, make_request):
    fake_upstream.script("openai", [Fault.stream_error("rate_limited", after_chunks=2)])
    events, error = await stream_until_failure(make_request("openai"), http_client)
    assert text_of(events) == "Hello from"
    assert error.failure_class == FailureClass.RATE_LIMITED


SSE_WITHOUT_DONE = (
    'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
    'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
)


async def test_stream_that_finished_but_omits_done_is_accepted(fake_upstream, http_client, make_request):
    fake_upstream.script("openai", [Fault.status(200, SSE_WITHOUT_DONE, content_type="text/event-stream")])
    events = await call(make_request("openai_compatible"), http_client, stream=True)
    assert text_of(events) == "Hi" and events[-1].finish_reason == "stop"


async def test_json_error_instead_of_a_stream_is_mapped(fake_upstream, http_client, make_request):
    body = '{"error": {"message": "Too many requests", "type": "requests", "code": "rate_limit_exceeded"}}'
    fake_upstream.script("openai", [Fault.status(200, body)])
    error = await failure(make_request("openai"), http_client, stream=True)
    assert error.failure_class == FailureClass.RATE_LIMITED
