"""The incremental SSE decoder: events survive any split of the byte stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from providers.adapters.sse import MAX_LINE_BYTES, SSEDecoder, SSEError, SSEEvent, aiter_sse

STREAM = (
    b": welcome\n"
    b"event: message_start\n"
    b'data: {"a": 1}\n'
    b"\n"
    b": keep-alive\n"
    b"\n"
    b"data: line one\n"
    b"data: line two\n"
    b"id: 7\n"
    b"retry: 1500\n"
    b"\n"
    b"data: [DONE]\n"
    b"\n"
)
EXPECTED = [
    SSEEvent(data='{"a": 1}', event="message_start"),
    SSEEvent(data="line one\nline two", id="7", retry_ms=1500),
    SSEEvent(data="[DONE]", id="7", retry_ms=1500),
]


def decode(pieces: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = [event for piece in pieces for event in decoder.feed(piece)]
    return events + decoder.close()


def test_whole_stream_decodes_to_events_with_names_multiline_data_id_and_retry() -> None:
    assert decode([STREAM]) == EXPECTED


def test_events_split_at_every_byte_decode_the_same() -> None:
    assert decode([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


@pytest.mark.parametrize("line_end", [b"\r\n", b"\r", b"\n"], ids=["crlf", "cr", "lf"])
def test_every_line_ending_decodes_the_same(line_end: bytes) -> None:
    stream = STREAM.replace(b"\n", line_end)
    assert decode([stream]) == EXPECTED
    assert decode([stream[i : i + 3] for i in range(0, len(stream), 3)]) == EXPECTED


def test_crlf_split_between_reads_is_one_line_end_not_two() -> None:
    events = decode([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"])
    assert events == [SSEEvent(data="a\nb")]


def test_comment_only_blocks_and_keep_alives_dispatch_nothing() -> None:
    assert decode([b": ping\n\n:\n\n: keep-alive\r\n\r\n"]) == []


def test_only_one_space_after_the_colon_is_dropped_and_it_is_optional() -> None:
    assert decode([b"data:tight\n\n", b"data:  two spaces\n\n"]) == [
        SSEEvent(data="tight"),
        SSEEvent(data=" two spaces"),
    ]


def test_multibyte_utf8_split_across_reads_decodes() -> None:
    raw = "data: héllo ✓\n\n".encode()
    cut = raw.index("✓".encode()) + 1
    assert decode([raw[:cut], raw[cut:]]) == [SSEEvent(data="héllo ✓")]


def test_byte_order_mark_at_stream_start_is_ignored() -> None:
    assert decode(["\ufeffdata: x\n\n".encode()]) == [SSEEvent(data="x")]


def test_event_with_complete_lines_but_no_blank_line_is_dispatched_at_end() -> None:
    assert decode([b"data: [DONE]\n"]) == [SSEEvent(data="[DONE]")]


def test_partial_last_line_is_discarded_at_end() -> None:
    assert decode([b'data: {"ok": 1}\n\ndata: {"trunc']) == [SSEEvent(data='{"ok": 1}')]


def test_event_name_resets_after_each_event() -> None:
    assert decode([b"event: ping\ndata: 1\n\ndata: 2\n\n"]) == [
        SSEEvent(data="1", event="ping"),
        SSEEvent(data="2"),
    ]


def test_a_line_longer_than_the_limit_is_an_error() -> None:
    decoder = SSEDecoder()
    with pytest.raises(SSEError):
        decoder.feed(b"data: " + b"x" * (MAX_LINE_BYTES + 1))


async def test_aiter_sse_reads_an_async_byte_stream() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(STREAM), 5):
            yield STREAM[i : i + 5]

    assert [event async for event in aiter_sse(chunks())] == EXPECTED
