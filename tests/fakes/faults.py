"""What the fake upstream does with one request: a Fault (success is `Fault.ok()`).

Every fault speaks the protocol of the endpoint it lands on (OpenAI, Anthropic, Gemini),
so one script can be replayed against any adapter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

# Named provider errors, each rendered in the exact body of the protocol that is hit:
ERROR_NAMES = (
    "rate_limited",  # 429 (Gemini RESOURCE_EXHAUSTED)
    "insufficient_quota",  # OpenAI 429 insufficient_quota, Anthropic 400 credit, Gemini 400 billing
    "auth",  # 401 (Gemini: 400 API_KEY_INVALID); the message echoes the key it received
    "permission",  # 403
    "context_length",  # 400 prompt too long
    "content_filter",  # OpenAI 400 policy; Anthropic 200 refusal; Gemini 200 blockReason
    "server_error",  # 500
    "overloaded",  # Anthropic 529; OpenAI / Gemini 503
    "not_found",  # 404 unknown model
    "bad_request",  # 400 other
    "timeout",  # OpenAI 408; Anthropic / Gemini 504
)


@dataclass(frozen=True, slots=True)
class FakeUsage:
    """Usage in normalised terms: input includes cached + cache_creation; output includes reasoning.

    Each protocol renders it in its own wire shape, so an adapter that normalises right
    reads back exactly these numbers.
    """

    input: int = 21
    output: int = 7
    cached: int = 0
    reasoning: int = 0
    cache_creation: int = 0  # Anthropic only


DEFAULT_TEXT = "Hello from the fake upstream."
DEFAULT_SIGNATURE = "RmFrZVRoaW5raW5nU2lnbmF0dXJlMDAwMQ=="  # Anthropic signs every thinking block


@dataclass(frozen=True, slots=True)
class FakeToolCall:
    """One function call the model makes; arguments is the JSON text (a dict is dumped).

    id None: the fake makes one per protocol (call_…, toolu_…; Gemini sends none).
    Arguments that are not a JSON object still stream as-is (OpenAI, Anthropic partial_json);
    a non-streamed Anthropic body or any Gemini answer needs an object.
    """

    name: str
    arguments: str = "{}"
    id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.arguments, str):
            object.__setattr__(self, "arguments", json.dumps(self.arguments))


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str = "ok"
    text: str | None = None  # None: DEFAULT_TEXT
    pieces: tuple[str, ...] | None = None  # stream deltas (default: text split at spaces)
    usage: FakeUsage = FakeUsage()
    finish: str = "stop"  # normalised: stop | length | content_filter
    error_name: str | None = None  # one of ERROR_NAMES
    status_code: int | None = None  # overrides the error's status; the status of Fault.status
    message: str | None = None  # overrides the error's message
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    retry_delay: str | None = None  # Gemini RetryInfo.retryDelay, e.g. "13s"
    after_chunks: int = 2  # content events sent before a stream fault
    delay_s: float = 0.0  # ok: before answering; drip: between writes
    chunk_size: int = 16  # drip: bytes per write
    calls: tuple[FakeToolCall, ...] = ()  # Fault.tool_calls
    arg_pieces: int = 3  # stream fragments per tool call's arguments (and per JSON answer)
    thinking: str | None = None  # Anthropic thinking block, Gemini thought part (OpenAI: none)
    signature: str | None = None  # Anthropic: None gives DEFAULT_SIGNATURE; Gemini thoughtSignature
    json_tool: str | None = None  # Anthropic: the JSON answer as a forced tool_use of this name
    size_bytes: int = 0  # Fault.oversized: the body's size
    chunked: bool = False  # Fault.oversized, not streamed: chunked instead of a Content-Length
    refusal: str | None = None  # OpenAI: the model refuses (message.refusal, delta.refusal pieces)

    # --- success ----------------------------------------------------------------------
    @classmethod
    def refused(cls, refusal: str) -> Fault:
        """OpenAI's refusal (structured outputs): message.refusal, content null; streamed as
        delta.refusal pieces. A 200 answer, not an error."""
        return cls("ok", text="", refusal=refusal, pieces=())

    @classmethod
    def ok(
        cls,
        text: str | None = None,
        *,
        usage: FakeUsage | None = None,
        finish: str = "stop",
        pieces: tuple[str, ...] | None = None,
        delay_s: float = 0.0,
        thinking: str | None = None,
        signature: str | None = None,
    ) -> Fault:
        """A text answer; thinking adds reasoning before it (see Fault.thinking)."""
        return cls(
            "ok",
            text=text,
            usage=usage or FakeUsage(),
            finish=finish,
            pieces=pieces,
            delay_s=delay_s,
            thinking=thinking,
            signature=signature,
        )

    @classmethod
    def tool_calls(
        cls,
        calls: list[FakeToolCall] | tuple[FakeToolCall, ...],
        text: str | None = None,
        *,
        arg_pieces: int = 3,
        usage: FakeUsage | None = None,
        thinking: str | None = None,
        signature: str | None = None,
    ) -> Fault:
        """The model calls tools (finish "tool_calls"), optionally after some text.

        Streams split each call's arguments into arg_pieces fragments (OpenAI, Anthropic);
        Gemini sends each call whole.
        """
        if not calls:
            raise ValueError("Fault.tool_calls needs at least one FakeToolCall")
        return cls(
            "ok",
            text=text or "",
            usage=usage or FakeUsage(),
            finish="tool_calls",
            calls=tuple(calls),
            arg_pieces=arg_pieces,
            thinking=thinking,
            signature=signature,
        )

    @classmethod
    def json(
        cls,
        value: Any,
        *,
        as_tool: str | None = None,
        arg_pieces: int = 3,
        usage: FakeUsage | None = None,
        thinking: str | None = None,
    ) -> Fault:
        """A structured-output answer: the content is the JSON text of value.

        A str is sent verbatim (so a test can send JSON that breaks its schema, or is not JSON
        at all); anything else is dumped. as_tool: Anthropic answers with a forced tool_use
        block of that name whose input is the object (stop_reason "tool_use"); the other
        protocols still answer with the text.
        """
        text = value if isinstance(value, str) else json.dumps(value)
        return cls(
            "ok",
            text=text,
            pieces=split_evenly(text, arg_pieces),
            usage=usage or FakeUsage(),
            arg_pieces=arg_pieces,
            thinking=thinking,
            json_tool=as_tool,
        )

    @classmethod
    def thinking_answer(
        cls,
        thinking: str,
        text: str | None = None,
        *,
        signature: str | None = None,
        usage: FakeUsage | None = None,
    ) -> Fault:
        """Reasoning, then the answer. Anthropic: a signed thinking block (thinking_delta,
        signature_delta); Gemini: a part with "thought": true. OpenAI sends no reasoning text;
        set usage.reasoning for completion_tokens_details.reasoning_tokens / thoughtsTokenCount.
        """
        return cls.ok(text, usage=usage, thinking=thinking, signature=signature)

    @classmethod
    def split_sse(cls, text: str | None = None) -> Fault:
        """A success stream cut into tiny TCP writes, CRLF line ends, comments and keep-alives."""
        return cls("split", text=text)

    @classmethod
    def drip(cls, *, delay_s: float = 0.005, chunk_size: int = 16) -> Fault:
        """A success response written a few bytes at a time with a pause between writes."""
        return cls("drip", delay_s=delay_s, chunk_size=chunk_size)

    # --- HTTP errors ------------------------------------------------------------------
    @classmethod
    def error(
        cls,
        name: str,
        *,
        retry_after: str | None = None,
        retry_after_ms: str | None = None,
        retry_delay: str | None = None,
        status: int | None = None,
        message: str | None = None,
    ) -> Fault:
        """A named provider error; retry_delay ("13s") becomes Gemini's RetryInfo."""
        if name not in ERROR_NAMES:
            raise ValueError(f"unknown error {name!r}; choose from {ERROR_NAMES}")
        headers = []
        if retry_after is not None:
            headers.append(("retry-after", retry_after))
        if retry_after_ms is not None:
            headers.append(("retry-after-ms", retry_after_ms))
        return cls(
            "error",
            error_name=name,
            status_code=status,
            message=message,
            headers=tuple(headers),
            retry_delay=retry_delay,
        )

    @classmethod
    def status(
        cls,
        code: int,
        body: bytes | str = b"",
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Fault:
        """Any status with a raw body."""
        raw = body.encode() if isinstance(body, str) else body
        return cls(
            "status",
            status_code=code,
            body=raw,
            content_type=content_type,
            headers=tuple((headers or {}).items()),
        )

    @classmethod
    def redirect(cls, location: str = "https://elsewhere.example/v1", code: int = 301) -> Fault:
        return cls("status", status_code=code, headers=(("location", location),), content_type="text/plain")

    @classmethod
    def stream_error(cls, name: str, *, after_chunks: int = 1) -> Fault:
        """A 200 stream whose content is followed by the protocol's in-stream error event."""
        return replace(cls.error(name), kind="stream_error", after_chunks=after_chunks)

    # --- broken bodies ----------------------------------------------------------------
    @classmethod
    def malformed_json(cls) -> Fault:
        return cls("malformed")

    @classmethod
    def no_choices(cls) -> Fault:
        """A 200 without choices (Anthropic: without content; Gemini: without candidates)."""
        return cls("no_choices")

    @classmethod
    def empty_stream(cls) -> Fault:
        """A well-framed stream, end marker included, that carries no text at all."""
        return cls("empty_stream")

    @classmethod
    def oversized(cls, size_bytes: int, *, chunked: bool = False, after_chunks: int = 0) -> Fault:
        """A 200 of size_bytes, written 64 KiB at a time from one buffer (the fake holds none of it).

        Not streamed: the success body with a padding field, with its Content-Length (or
        chunked). Streamed: after_chunks content events, then SSE comment lines until the size
        is reached, then the rest of the stream.
        """
        return cls("oversized", size_bytes=size_bytes, chunked=chunked, after_chunks=after_chunks)

    # --- transport faults -------------------------------------------------------------
    @classmethod
    def reset(cls, *, after_chunks: int = 2) -> Fault:
        """Headers and part of the body, then a TCP reset (SO_LINGER 0)."""
        return cls("reset", after_chunks=after_chunks)

    @classmethod
    def hang(cls) -> Fault:
        """Read the request, never answer; the request's `disconnected` is set when the client leaves."""
        return cls("hang")

    @classmethod
    def truncated_stream(cls, *, after_chunks: int = 2) -> Fault:
        """Some content, then the connection is closed without any end marker."""
        return cls("truncated", after_chunks=after_chunks)

    @classmethod
    def stalled_stream(cls, *, after_chunks: int = 2) -> Fault:
        """Some content, then silence until the client disconnects."""
        return cls("stalled", after_chunks=after_chunks)


def split_evenly(text: str, n: int) -> tuple[str, ...]:
    """text in n pieces of near-equal length (fewer when text is shorter); "" gives ("",)."""
    n = max(1, min(n, len(text)))
    size, extra = divmod(len(text), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(text[start:end])
        start = end
    return tuple(out)
