"""An incremental Server-Sent Events decoder (WHATWG "event stream" interpretation).

Bytes arrive in arbitrary pieces: an event, a line, even a CRLF pair may be split across
reads. Lines end in CRLF, LF or CR. Lines starting with ':' are comments (keep-alives),
`data:` lines accumulate (joined with '\\n'), `event:` names the event, `id:` and `retry:`
are kept; a blank line dispatches the event if it carried any data.

One leniency beyond the spec: at end of stream, an event whose lines were all complete
(each ended by a line break) but which lacks the final blank line is still dispatched, so
`data: [DONE]\\n` followed by a close is not lost. A partial last line (no line break) is
discarded: it is a truncated event, not a complete one.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

_LINE_ENDS = (b"\n", b"\r")
MAX_LINE_BYTES = 4 * 1024 * 1024


class SSEError(ValueError):
    """The byte stream cannot be an event stream (a line longer than MAX_LINE_BYTES)."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: str
    event: str = "message"
    id: str | None = None
    retry_ms: int | None = None


class SSEDecoder:
    """Feed bytes, get complete events. Call close() once the stream has ended."""

    def __init__(self) -> None:
        self._buffer = b""
        self._skip_lf = False  # the last piece ended in CR: a leading LF belongs to it
        self._started = False
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        lines = (self._buffer + chunk).splitlines(keepends=True)
        self._buffer = b""
        if lines and not lines[-1].endswith(_LINE_ENDS):
            self._buffer = lines.pop()
            if len(self._buffer) > MAX_LINE_BYTES:
                raise SSEError(f"an event-stream line longer than {MAX_LINE_BYTES} bytes")
        if lines and lines[-1].endswith(b"\r"):
            self._skip_lf = True
        events: list[SSEEvent] = []
        for raw in lines:
            event = self._line(raw.rstrip(b"\r\n"))
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: dispatch a pending event whose lines were complete."""
        self._buffer = b""
        event = self._dispatch()
        return [event] if event is not None else []

    def _line(self, raw: bytes) -> SSEEvent | None:
        line = raw.decode("utf-8", errors="replace")
        if not self._started:
            self._started = True
            line = line.removeprefix("\ufeff")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SSEEvent(data="\n".join(data), event=event or "message", id=self._id, retry_ms=self._retry)


async def aiter_sse(chunks: AsyncIterable[bytes]) -> AsyncIterator[SSEEvent]:
    """Events from an async byte stream such as `response.aiter_bytes()`."""
    decoder = SSEDecoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.close():
        yield event
