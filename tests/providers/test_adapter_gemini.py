"""The Gemini adapter against the fake upstream: key in a header, body shape, usage, errors."""

from __future__ import annotations

import json

import pytest

from providers.engine.types import ChatParams, FailureClass, Message
from tests.fakes import FakeUsage, Fault

from .adapter_calls import call, failure
from .conftest import TEST_KEYS

KEY = TEST_KEYS["gemini"]
KEY_NOT_VALID = (
    '{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", '
    '"status": "INVALID_ARGUMENT"}}'
)


@pytest.mark.parametrize(
    ("stream", "path", "query"),
    [
        (False, "/v1beta/models/gemini-2.5-flash:generateContent", {}),
        (True, "/v1beta/models/gemini-2.5-flash:streamGenerateContent", {"alt": "sse"}),
    ],
    ids=["complete", "stream"],
)
async def test_key_goes_in_a_header_never_in_the_url(
    stream, path, query, fake_upstream, http_client, make_request
):
    await call(make_request("gemini", model="gemini-2.5-flash"), http_client, stream=stream)
    sent = fake_upstream.last_request
    assert (sent.method, sent.path, sent.query) == ("POST", path, query)
    assert sent.headers["x-goog-api-key"] == KEY
    assert KEY not in sent.path and KEY not in json.dumps(sent.query)
    assert "authorization" not in sent.headers


async def test_models_prefix_in_the_model_name_is_not_doubled(fake_upstream, http_client, make_request):
    await call(make_request("gemini", model="models/gemini-2.5-pro"), http_client, stream=False)
    assert fake_upstream.last_request.path == "/v1beta/models/gemini-2.5-pro:generateContent"


async def test_body_has_contents_system_instruction_and_generation_config(
    fake_upstream, http_client, make_request
):
    messages = (
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("assistant", "Hello"),
        Message("user", "2+2?"),
        Message("user", "Exactly."),
    )
    params = ChatParams(temperature=0.3, top_p=0.9, max_tokens=100, stop=("END",), seed=5, user="ignored")
    await call(make_request("gemini", messages=messages, params=params), http_client, stream=False)
    assert fake_upstream.last_request.json == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello"}]},
            {"role": "user", "parts": [{"text": "2+2?\n\nExactly."}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {
            "temperature": 0.3,
            "topP": 0.9,
            "maxOutputTokens": 100,
            "stopSequences": ["END"],
            "seed": 5,
        },
    }


async def test_no_generation_config_without_parameters(fake_upstream, http_client, make_request):
    await call(make_request("gemini"), http_client, stream=False)
    assert fake_upstream.last_request.json == {
        "contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]
    }


async def test_usage_counts_thoughts_as_output_and_reasoning(fake_upstream, http_client, make_request):
    usage = FakeUsage(input=80, output=50, cached=30, reasoning=35)
    fake_upstream.script("gemini", [Fault.ok("Four.", usage=usage, finish="length")])
    response = await call(make_request("gemini", model="gemini-2.5-flash"), http_client, stream=False)
    assert (response.text, response.finish_reason, response.model) == ("Four.", "length", "gemini-2.5-flash")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (80, 50)
    assert (response.usage.cached_tokens, response.usage.reasoning_tokens) == (30, 35)


async def test_stream_yields_deltas_then_usage_from_the_last_chunk(fake_upstream, http_client, make_request):
    usage = FakeUsage(input=10, output=8, reasoning=5)
    fake_upstream.script("gemini", [Fault.ok("x y z", usage=usage)])
    events = await call(make_request("gemini"), http_client, stream=True)
    assert [e.text for e in events[:-1]] == ["x", " y", " z"]
    final = events[-1]
    assert final.finish_reason == "stop"
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.reasoning_tokens) == (10, 8, 5)


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_safety_finish_without_text_is_content_filter(stream, fake_upstream, http_client, make_request):
    fake_upstream.script("gemini", [Fault.ok("", finish="content_filter")])
    assert (
        await failure(make_request("gemini"), http_client, stream=stream)
    ).failure_class == FailureClass.CONTENT_FILTER


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_blocked_prompt_is_content_filter(stream, fake_upstream, http_client, make_request):
    fake_upstream.script("gemini", [Fault.error("content_filter")])
    error = await failure(make_request("gemini"), http_client, stream=stream)
    assert error.failure_class == FailureClass.CONTENT_FILTER and "SAFETY" in error.message


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(
    ("fault", "expected", "status"),
    [
        (Fault.error("auth"), FailureClass.AUTH_ERROR, 400),
        (
            Fault.status(
                400,
                KEY_NOT_VALID,
            ),
            FailureClass.AUTH_ERROR,
            400,
        ),
        (Fault.error("permission"), FailureClass.AUTH_ERROR, 403),
        (Fault.error("rate_limited"), FailureClass.RATE_LIMITED, 429),
        (Fault.error("insufficient_quota"), FailureClass.QUOTA_EXHAUSTED, 400),
        (Fault.error("context_length"), FailureClass.CONTEXT_LENGTH, 400),
        (Fault.error("bad_request"), FailureClass.INVALID_REQUEST, 400),
        (Fault.error("not_found"), FailureClass.INVALID_REQUEST, 404),
        (Fault.error("server_error"), FailureClass.SERVER_ERROR, 500),
        (Fault.error("overloaded"), FailureClass.SERVER_ERROR, 503),
        (Fault.error("timeout"), FailureClass.TIMEOUT, 504),
        (Fault.status(504, "upstream timed out", content_type="text/plain"), FailureClass.TIMEOUT, 504),
    ],
    ids=lambda v: v.error_name or f"raw-{v.status_code}" if isinstance(v, Fault) else None,
)
async def test_error_mapping(fault, expected, status, stream, fake_upstream, http_client, make_request):
    fake_upstream.script("gemini", [fault])
    error = await failure(make_request("gemini"), http_client, stream=stream)
    assert (error.failure_class, error.status) == (expected, status)


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_resource_exhausted_carries_retry_info_delay(stream, fake_upstream, http_client, make_request):
    fake_upstream.script("gemini", [Fault.error("rate_limited", retry_delay="13s")])
    error = await failure(make_request("gemini"), http_client, stream=stream)
    assert (error.failure_class, error.retry_after_s) == (FailureClass.RATE_LIMITED, 13.0)


async def test_mid_stream_error_chunk_is_mapped(fake_upstream, http_client, make_request):
    fake_upstream.script("gemini", [Fault.stream_error("overloaded", after_chunks=1)])
    error = await failure(make_request("gemini"), http_client, stream=True)
    assert error.failure_class == FailureClass.SERVER_ERROR
