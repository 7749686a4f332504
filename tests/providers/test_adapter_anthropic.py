"""The Anthropic adapter against the fake upstream: request shape, usage, error mapping."""

from __future__ import annotations

import pytest

from providers.engine.types import ChatParams, FailureClass, Message
from tests.fakes import FakeUsage, Fault

from .adapter_calls import call, failure, stream_until_failure, text_of
from .conftest import TEST_KEYS

TOO_LARGE = (
    '{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum size"}}'
)


async def test_headers_carry_the_key_and_version_and_no_bearer(fake_upstream, http_client, make_request):
    await call(make_request("anthropic"), http_client, stream=False)
    sent = fake_upstream.last_request
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.headers["x-api-key"] == TEST_KEYS["anthropic"]
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers


async def test_system_is_hoisted_and_same_role_turns_are_merged(fake_upstream, http_client, make_request):
    messages = (
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("system", "Answer in French."),
        Message("user", "How are you?"),
        Message("assistant", "Bien."),
        Message("assistant", "Et toi ?"),
        Message("user", "Ça va."),
    )
    params = ChatParams(temperature=0.5, top_p=0.8, stop=("END",), user="u-1", seed=3, presence_penalty=0.2)
    await call(
        make_request("anthropic", model="claude-sonnet-4-5", messages=messages, params=params),
        http_client,
        stream=False,
    )
    assert fake_upstream.last_request.json == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": "Be brief.\n\nAnswer in French.",
        "messages": [
            {"role": "user", "content": "Hi\n\nHow are you?"},
            {"role": "assistant", "content": "Bien.\n\nEt toi ?"},
            {"role": "user", "content": "Ça va."},
        ],
        "temperature": 0.5,
        "top_p": 0.8,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
    }


async def test_conversation_starting_with_assistant_is_sent_as_is(fake_upstream, http_client, make_request):
    messages = (Message("assistant", "Welcome!"), Message("user", "Thanks"))
    await call(make_request("anthropic", messages=messages), http_client, stream=False)
    assert [m["role"] for m in fake_upstream.last_request.json["messages"]] == ["assistant", "user"]


@pytest.mark.parametrize(
    ("params", "options", "expected"),
    [
        (ChatParams(), {}, 4096),
        (ChatParams(), {"max_tokens": 1000}, 1000),
        (ChatParams(max_tokens=64), {"max_tokens": 1000}, 64),
    ],
    ids=["default", "provider-option", "request"],
)
async def test_max_tokens_is_always_sent(params, options, expected, fake_upstream, http_client, make_request):
    await call(make_request("anthropic", params=params, options=options), http_client, stream=False)
    assert fake_upstream.last_request.json["max_tokens"] == expected


async def test_usage_counts_cache_reads_and_writes_as_input(fake_upstream, http_client, make_request):
    usage = FakeUsage(input=1000, output=12, cached=700, cache_creation=200)
    fake_upstream.script("anthropic", [Fault.ok("Done.", usage=usage)])
    response = await call(make_request("anthropic"), http_client, stream=False)
    assert response.response_id.startswith("msg_") and response.text == "Done."
    assert (response.usage.input_tokens, response.usage.cached_tokens, response.usage.output_tokens) == (
        1000,
        700,
        12,
    )


@pytest.mark.parametrize(("finish", "expected"), [("stop", "stop"), ("length", "length")])
async def test_stop_reason_is_normalised(finish, expected, fake_upstream, http_client, make_request):
    fake_upstream.script("anthropic", [Fault.ok(finish=finish), Fault.ok(finish=finish)])
    assert (await call(make_request("anthropic"), http_client, stream=False)).finish_reason == expected
    assert (await call(make_request("anthropic"), http_client, stream=True))[-1].finish_reason == expected


async def test_stream_yields_deltas_then_normalised_usage(fake_upstream, http_client, make_request):
    usage = FakeUsage(input=500, output=3, cached=400, cache_creation=50)
    fake_upstream.script("anthropic", [Fault.ok("A B C", usage=usage)])
    events = await call(make_request("anthropic"), http_client, stream=True)
    assert fake_upstream.last_request.json["stream"] is True
    assert [e.text for e in events[:-1]] == ["A", " B", " C"]
    final = events[-1]
    assert final.finish_reason == "stop"
    assert (final.usage.input_tokens, final.usage.cached_tokens, final.usage.output_tokens) == (500, 400, 3)


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(
    ("fault", "expected", "status"),
    [
        (Fault.error("overloaded"), FailureClass.RATE_LIMITED, 529),
        (Fault.error("rate_limited"), FailureClass.RATE_LIMITED, 429),
        (Fault.error("insufficient_quota"), FailureClass.QUOTA_EXHAUSTED, 400),
        (
            Fault.error("bad_request", message="You have reached your specified API usage limits."),
            FailureClass.QUOTA_EXHAUSTED,
            400,
        ),
        (Fault.error("context_length"), FailureClass.CONTEXT_LENGTH, 400),
        (Fault.error("bad_request"), FailureClass.INVALID_REQUEST, 400),
        (Fault.error("auth"), FailureClass.AUTH_ERROR, 401),
        (Fault.error("permission"), FailureClass.AUTH_ERROR, 403),
        (Fault.error("not_found"), FailureClass.INVALID_REQUEST, 404),
        (
            Fault.status(
                413,
                TOO_LARGE,
            ),
            FailureClass.INVALID_REQUEST,
            413,
        ),
        (Fault.error("server_error"), FailureClass.SERVER_ERROR, 500),
        (Fault.status(529, ""), FailureClass.RATE_LIMITED, 529),
    ],
    ids=lambda v: v.message or v.error_name or str(v.status_code) if isinstance(v, Fault) else None,
)
async def test_error_mapping(fault, expected, status, stream, fake_upstream, http_client, make_request):
    fake_upstream.script("anthropic", [fault])
    error = await failure(make_request("anthropic"), http_client, stream=stream)
    assert (error.failure_class, error.status) == (expected, status)


async def test_overloaded_error_event_mid_stream_is_rate_limited_with_usage_so_far(
    fake_upstream, http_client, make_request
):
    fake_upstream.script("anthropic", [Fault.stream_error("overloaded", after_chunks=2)])
    events, error = await stream_until_failure(make_request("anthropic"), http_client)
    assert text_of(events) == "Hello from"
    assert error.failure_class == FailureClass.RATE_LIMITED and error.status is None
    assert error.usage is not None and error.usage.input_tokens == 21


async def test_truncated_stream_carries_the_input_tokens_already_reported(
    fake_upstream, http_client, make_request
):
    fake_upstream.script("anthropic", [Fault.truncated_stream(after_chunks=1)])
    _, error = await stream_until_failure(make_request("anthropic"), http_client)
    assert error.failure_class == FailureClass.CONNECTION_ERROR
    assert error.usage is not None and error.usage.input_tokens == 21


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_refusal_without_text_is_content_filter(stream, fake_upstream, http_client, make_request):
    fake_upstream.script("anthropic", [Fault.error("content_filter")])
    error = await failure(make_request("anthropic"), http_client, stream=stream)
    assert error.failure_class == FailureClass.CONTENT_FILTER
