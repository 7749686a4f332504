"""Transport and framing faults, the same for every HTTP adapter, over a real socket."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from providers.adapters.registry import get_adapter
from providers.engine.types import FailureClass, Timeouts
from tests.fakes import ERROR_NAMES, FakeUpstream, Fault

from .adapter_calls import HTTP_KINDS, assert_key_hidden, call, failure, poll, stream_until_failure, text_of
from .conftest import TEST_KEYS

SHORT = Timeouts(connect_s=1.0, read_s=0.2, first_token_s=0.2)
pytestmark = pytest.mark.parametrize("kind", HTTP_KINDS)
both_modes = pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])


@both_modes
async def test_connection_refused_is_connection_error(kind, stream, http_client, make_request) -> None:
    request = make_request(kind, base_url=FakeUpstream.refused_base_url(kind))
    error = await failure(request, http_client, stream=stream)
    assert error.failure_class == FailureClass.CONNECTION_ERROR


@both_modes
async def test_hang_is_a_timeout_after_the_read_timeout(
    kind, stream, fake_upstream, http_client, make_request
):
    fake_upstream.script(kind, [Fault.hang()])
    started = time.monotonic()
    error = await failure(make_request(kind, timeouts=SHORT), http_client, stream=stream)
    assert error.failure_class == FailureClass.TIMEOUT
    assert time.monotonic() - started < 1.5


@both_modes
async def test_reset_mid_body_is_connection_error(kind, stream, fake_upstream, http_client, make_request):
    fake_upstream.script(kind, [Fault.reset()])
    error = await failure(make_request(kind), http_client, stream=stream)
    assert error.failure_class == FailureClass.CONNECTION_ERROR


@both_modes
async def test_redirect_is_not_followed_and_is_bad_response(
    kind, stream, fake_upstream, http_client, make_request
):
    fake_upstream.script(kind, [Fault.redirect("https://elsewhere.example/v1")])
    error = await failure(make_request(kind), http_client, stream=stream)
    assert error.failure_class == FailureClass.BAD_RESPONSE
    assert error.status == 301
    assert "elsewhere.example" in error.message and "base URL" in error.message
    assert len(fake_upstream.requests) == 1


@both_modes
async def test_malformed_json_is_bad_response(kind, stream, fake_upstream, http_client, make_request):
    fake_upstream.script(kind, [Fault.malformed_json()])
    error = await failure(make_request(kind), http_client, stream=stream)
    assert error.failure_class == FailureClass.BAD_RESPONSE


async def test_200_without_choices_is_bad_response(kind, fake_upstream, http_client, make_request):
    fake_upstream.script(kind, [Fault.no_choices()])
    error = await failure(make_request(kind), http_client, stream=False)
    assert error.failure_class == FailureClass.BAD_RESPONSE


async def test_stream_without_any_content_is_bad_response(kind, fake_upstream, http_client, make_request):
    fake_upstream.script(kind, [Fault.empty_stream()])
    error = await failure(make_request(kind), http_client, stream=True)
    assert error.failure_class == FailureClass.BAD_RESPONSE


async def test_stream_cut_after_content_is_connection_error_after_the_text_so_far(
    kind, fake_upstream, http_client, make_request
):
    fake_upstream.script(kind, [Fault.truncated_stream(after_chunks=2)])
    events, error = await stream_until_failure(make_request(kind), http_client)
    assert text_of(events) == "Hello from"
    assert error.failure_class == FailureClass.CONNECTION_ERROR


async def test_stalled_stream_times_out(kind, fake_upstream, http_client, make_request):
    fake_upstream.script(kind, [Fault.stalled_stream(after_chunks=1)])
    events, error = await stream_until_failure(make_request(kind, timeouts=SHORT), http_client)
    assert text_of(events) == "Hello"
    assert error.failure_class == FailureClass.TIMEOUT


async def test_sse_split_across_writes_with_crlf_and_comments_yields_the_whole_answer(
    kind, fake_upstream, http_client, make_request
):
    fake_upstream.script(kind, [Fault.split_sse("Grüße aus Köln ✓ done")])
    events = await call(make_request(kind), http_client, stream=True)
    assert text_of(events) == "Grüße aus Köln ✓ done"
    assert events[-1].finish_reason == "stop" and events[-1].usage is not None


@both_modes
async def test_slow_drip_still_succeeds(kind, stream, fake_upstream, http_client, make_request):
    fake_upstream.script(kind, [Fault.drip(delay_s=0.001, chunk_size=64)])
    result = await call(make_request(kind), http_client, stream=stream)
    text = text_of(result) if stream else result.text
    assert text == "Hello from the fake upstream."


async def test_closing_the_stream_closes_the_upstream_connection(
    kind, fake_upstream, http_client, make_request
):
    fake_upstream.script(kind, [Fault.stalled_stream(after_chunks=1)])
    events = get_adapter(kind).stream(make_request(kind), http_client)
    first = await anext(events)
    assert first.text == "Hello"
    await events.aclose()
    record = fake_upstream.last_request
    assert await poll(record.disconnected.is_set), "the fake never saw the client disconnect"


@both_modes
@pytest.mark.parametrize("name", ERROR_NAMES)
async def test_no_error_shows_the_api_key(kind, stream, name, fake_upstream, http_client, make_request):
    fake_upstream.script(kind, [Fault.error(name, message=f"echo {TEST_KEYS[kind]} back")])
    error = await failure(make_request(kind), http_client, stream=stream)
    assert_key_hidden(error, TEST_KEYS[kind])


@both_modes
async def test_mid_stream_error_event_is_mapped(kind, stream, fake_upstream, http_client, make_request):
    fake_upstream.script(kind, [Fault.stream_error("server_error", after_chunks=1)])
    error = await failure(make_request(kind), http_client, stream=stream)
    assert error.failure_class == FailureClass.SERVER_ERROR


@pytest.mark.parametrize(
    ("fault", "seconds"),
    [
        (Fault.error("rate_limited", retry_after="2"), 2.0),
        (Fault.error("rate_limited", retry_after_ms="1500", retry_after="9"), 1.5),
    ],
    ids=["seconds", "milliseconds"],
)
@both_modes
async def test_retry_after_header_is_carried(
    kind, stream, fault, seconds, fake_upstream, http_client, make_request
):
    fake_upstream.script(kind, [fault])
    error = await failure(make_request(kind), http_client, stream=stream)
    assert error.failure_class == FailureClass.RATE_LIMITED
    assert error.retry_after_s == seconds


async def test_retry_after_http_date_is_carried(kind, fake_upstream, http_client, make_request):
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    fake_upstream.script(kind, [Fault.error("rate_limited", retry_after=when)])
    error = await failure(make_request(kind), http_client, stream=False)
    assert error.retry_after_s is not None and 28.0 <= error.retry_after_s <= 30.0
