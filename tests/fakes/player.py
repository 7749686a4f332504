"""Plays one Fault on one HTTP exchange. Each player returns whether to keep the connection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from .faults import Fault
from .http11 import LAST_CHUNK, abort_with_reset, chunk, head, wait_for_eof
from .wire import (
    Reply,
    StreamParts,
    anthropic_body,
    gemini_blocked,
    gemini_body,
    openai_body,
)
from .wire_errors import SOFT, error_body, stream_error_frame
from .wire_tools import STREAM, SUCCESS_BODY

SPLIT_PAUSE_S = 0.001  # between the pieces of a split stream, so they leave as separate writes
RESET_GRACE_S = 0.02  # lets the client read the head before the reset arrives


@dataclass(slots=True)
class Exchange:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    reply: Reply
    stream: bool
    sse: bool  # Gemini streams without alt=sse answer with a JSON array
    on_disconnect: Callable[[], None]
    id_header: tuple[str, str]


async def _write(ex: Exchange, data: bytes) -> None:
    ex.writer.write(data)
    await ex.writer.drain()


def _json_head(ex: Exchange, status: int, length: int, fault: Fault, content_type: str) -> bytes:
    headers = [("content-type", content_type), ("content-length", str(length)), ex.id_header]
    return head(status, headers + list(fault.headers))


def _stream_head(ex: Exchange) -> bytes:
    return head(
        200,
        [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("transfer-encoding", "chunked"),
            ("cache-control", "no-cache"),
            ex.id_header,
        ],
    )


def _encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


async def send_body(ex: Exchange, status: int, body: bytes, fault: Fault, content_type: str) -> bool:
    await _write(ex, _json_head(ex, status, len(body), fault, content_type) + body)
    return True


async def send_frames(ex: Exchange, frames: list[str], *, end: bool = True) -> None:
    body = b"".join(chunk(f.encode()) for f in frames)
    await _write(ex, _stream_head(ex) + body + (LAST_CHUNK if end else b""))


def _parts(ex: Exchange) -> StreamParts:
    return STREAM[ex.reply.protocol](ex.reply)


async def play_ok(fault: Fault, ex: Exchange) -> bool:
    if fault.delay_s:
        await asyncio.sleep(fault.delay_s)
    if ex.stream and ex.sse:
        await send_frames(ex, _parts(ex).full())
        return True
    body = SUCCESS_BODY[ex.reply.protocol](ex.reply)
    return await send_body(ex, 200, _encode([body] if ex.stream else body), fault, "application/json")


def split_pieces(frames: list[str]) -> list[bytes]:
    """Each event with CRLF line ends and a comment line, cut at awkward places (mid-CRLF too)."""
    pieces = [b": keep-alive\r\n\r\n"]
    for text in frames:
        data = (": ping\r\n" + text.replace("\r\n", "\n").replace("\n", "\r\n")).encode()
        mid = len(data) // 2
        pieces += [data[:5], data[5:mid], data[mid:-3], data[-3:-1], data[-1:], b":\r\n\r\n"]
    return [p for p in pieces if p]


async def play_split(fault: Fault, ex: Exchange) -> bool:
    if not (ex.stream and ex.sse):
        return await play_ok(fault, ex)
    await _write(ex, _stream_head(ex))
    for piece in split_pieces(_parts(ex).full()):
        await _write(ex, chunk(piece))
        await asyncio.sleep(SPLIT_PAUSE_S)
    await _write(ex, LAST_CHUNK)
    return True


async def play_drip(fault: Fault, ex: Exchange) -> bool:
    if ex.stream and ex.sse:
        data = _stream_head(ex) + b"".join(chunk(f.encode()) for f in _parts(ex).full()) + LAST_CHUNK
    else:
        body = _encode(SUCCESS_BODY[ex.reply.protocol](ex.reply))
        data = _json_head(ex, 200, len(body), fault, "application/json") + body
    for start in range(0, len(data), fault.chunk_size):
        await _write(ex, data[start : start + fault.chunk_size])
        await asyncio.sleep(fault.delay_s)
    return True


async def play_error(fault: Fault, ex: Exchange) -> bool:
    if (ex.reply.protocol, fault.error_name) in SOFT:
        return await _play_refusal(fault, ex)
    status, body = error_body(fault, ex.reply)
    return await send_body(ex, status, _encode(body), fault, "application/json")


async def _play_refusal(fault: Fault, ex: Exchange) -> bool:
    """Anthropic refuses with stop_reason "refusal"; Gemini blocks the prompt (blockReason)."""
    refusal = replace(ex.reply, text="", pieces=(), finish="content_filter")
    if ex.reply.protocol == "gemini":
        blocked = gemini_blocked(refusal)
        if ex.stream and ex.sse:
            await send_frames(ex, [f"data: {json.dumps(blocked)}\r\n\r\n"])
            return True
        return await send_body(ex, 200, _encode(blocked), Fault(), "application/json")
    return await play_ok(Fault(), replace(ex, reply=refusal))


async def play_status(fault: Fault, ex: Exchange) -> bool:
    return await send_body(ex, fault.status_code or 500, fault.body, fault, fault.content_type)


async def play_stream_error(fault: Fault, ex: Exchange) -> bool:
    if not (ex.stream and ex.sse) or (ex.reply.protocol, fault.error_name) in SOFT:
        return await play_error(fault, ex)
    await send_frames(ex, [*_parts(ex).partial(fault.after_chunks), stream_error_frame(fault, ex.reply)])
    return True


async def play_malformed(fault: Fault, ex: Exchange) -> bool:
    if ex.stream and ex.sse:
        broken = 'data: {"choices": [{"delta": {"content": "x"\n\n'
        await send_frames(ex, [*_parts(ex).partial(1), broken, *_parts(ex).ending])
        return True
    return await send_body(
        ex, 200, b'{"id": "broken", "choices": [{"message": {"ro', fault, "application/json"
    )


async def play_no_choices(fault: Fault, ex: Exchange) -> bool:
    if ex.stream:
        return await play_empty_stream(fault, ex)
    render: dict[str, Callable[..., dict[str, Any]]] = {
        "openai": lambda r: openai_body(r, with_choices=False),
        "anthropic": lambda r: anthropic_body(r, with_content=False),
        "gemini": lambda r: gemini_body(r, with_candidates=False),
    }
    return await send_body(ex, 200, _encode(render[ex.reply.protocol](ex.reply)), fault, "application/json")


async def play_empty_stream(fault: Fault, ex: Exchange) -> bool:
    return await play_ok(Fault(), replace(ex, reply=replace(ex.reply, text="", pieces=())))


async def _send_partial(fault: Fault, ex: Exchange) -> None:
    """The head and part of the body, never its end."""
    if ex.stream and ex.sse:
        await send_frames(ex, _parts(ex).partial(fault.after_chunks), end=False)
        return
    body = _encode(SUCCESS_BODY[ex.reply.protocol](ex.reply))
    await _write(ex, _json_head(ex, 200, len(body), fault, "application/json") + body[: len(body) // 2])


PAD = 64 * 1024


async def _write_padding(ex: Exchange, size: int, frame: Callable[[int], bytes]) -> None:
    """size bytes of padding, frame(n) making each write of n bytes from one reused buffer."""
    full = frame(PAD)
    while size > 0:
        n = min(PAD, size)
        await _write(ex, full if n == PAD else frame(n))
        size -= n


async def play_oversized(fault: Fault, ex: Exchange) -> bool:
    if ex.stream and ex.sse:
        parts = _parts(ex)
        before = "".join(parts.partial(fault.after_chunks)).encode()
        after = "".join(parts.content[fault.after_chunks :] + parts.ending).encode()
        await _write(ex, _stream_head(ex) + chunk(before))
        padding = fault.size_bytes - len(before) - len(after)
        await _write_padding(ex, padding, lambda n: chunk(b":" + b"x" * (n - 3) + b"\n\n"))
        await _write(ex, chunk(after) + LAST_CHUNK)
        return True
    body = _encode(SUCCESS_BODY[ex.reply.protocol](ex.reply))
    prefix, suffix = b'{"padding":"', b'",' + body[1:]
    padding = max(0, fault.size_bytes - len(prefix) - len(suffix))
    if fault.chunked:
        headers = [("content-type", "application/json"), ("transfer-encoding", "chunked"), ex.id_header]
        await _write(ex, head(200, headers) + chunk(prefix))
        await _write_padding(ex, padding, lambda n: chunk(b"x" * n))
        await _write(ex, chunk(suffix) + LAST_CHUNK)
    else:
        size = len(prefix) + padding + len(suffix)
        await _write(ex, _json_head(ex, 200, size, fault, "application/json") + prefix)
        await _write_padding(ex, padding, lambda n: b"x" * n)
        await _write(ex, suffix)
    return True


async def play_reset(fault: Fault, ex: Exchange) -> bool:
    await _send_partial(fault, ex)
    await asyncio.sleep(RESET_GRACE_S)
    abort_with_reset(ex.writer)
    return False


async def play_truncated(fault: Fault, ex: Exchange) -> bool:
    await _send_partial(fault, ex)
    ex.writer.close()
    return False


async def play_stalled(fault: Fault, ex: Exchange) -> bool:
    await _send_partial(fault, ex)
    await wait_for_eof(ex.reader)
    ex.on_disconnect()
    return False


async def play_hang(fault: Fault, ex: Exchange) -> bool:
    await wait_for_eof(ex.reader)
    ex.on_disconnect()
    return False


PLAYERS: dict[str, Callable[[Fault, Exchange], Awaitable[bool]]] = {
    "ok": play_ok,
    "split": play_split,
    "drip": play_drip,
    "error": play_error,
    "status": play_status,
    "stream_error": play_stream_error,
    "malformed": play_malformed,
    "no_choices": play_no_choices,
    "empty_stream": play_empty_stream,
    "reset": play_reset,
    "truncated": play_truncated,
    "stalled": play_stalled,
    "hang": play_hang,
    "oversized": play_oversized,
}


async def play(fault: Fault, ex: Exchange) -> bool:
    return await PLAYERS[fault.kind](fault, ex)
