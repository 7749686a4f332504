"""HTTP plumbing every wire-protocol adapter shares: one POST, one stream, one error path.

Each adapter describes a call (URL, headers, JSON body, how to classify its error bodies)
as an UpstreamCall; the helpers here send it with the call's own timeouts, never retry,
never follow redirects, read and map any non-2xx body before a stream is consumed, and
turn every failure into a masked ProviderError.

Streams end in one of three ways besides success (the same rule in every adapter):
- a transport error mid-body (reset, read timeout) -> its transport class (errors.py);
- the body ends before any text -> bad_response;
- the body ends after some text but without the protocol's end marker -> connection_error,
  carrying the usage counted so far when the protocol reported any. Adapters cannot know
  what reached the caller; the engine reclassifies this as stream_interrupted when tokens
  were already sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from providers.engine.types import (
    ChatRequest,
    ChatResponse,
    FailureClass,
    Message,
    ProviderError,
    StreamEvent,
    Usage,
)

from .errors import class_for_status, from_transport, provider_error, redirect_error
from .retry_after import gemini_retry_delay, parse_retry_after
from .sse import SSEError, SSEEvent, aiter_sse

# (HTTP status, or None for an error inside a 200 stream; parsed JSON or None; raw text)
Classifier = Callable[[int | None, Any, str], tuple[FailureClass, str]]
MAX_ERROR_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    url: str
    headers: dict[str, str]
    body: dict[str, Any]
    api_key: str
    timeout: httpx.Timeout
    classify: Classifier

    def error(self, failure_class: FailureClass, message: str, **kwargs: Any) -> ProviderError:
        return provider_error(failure_class, message, api_key=self.api_key, **kwargs)


def timeout_for(request: ChatRequest) -> httpx.Timeout:
    t = request.timeouts
    return httpx.Timeout(connect=t.connect_s, read=t.read_s, write=t.read_s, pool=t.connect_s)


def group_turns(
    messages: Iterable[Message], *, assistant_role: str
) -> tuple[str, list[tuple[str, list[Message]]]]:
    """System text (joined) and the other messages grouped into alternating (role, messages)
    turns: consecutive messages of one role share a turn; any role other than "assistant"
    (user, tool) is the user's."""
    system: list[str] = []
    turns: list[tuple[str, list[Message]]] = []
    for message in messages:
        if message.role == "system":
            system.append(message.content)
            continue
        role = assistant_role if message.role == "assistant" else "user"
        if turns and turns[-1][0] == role:
            turns[-1][1].append(message)
        else:
            turns.append((role, [message]))
    return "\n\n".join(system), turns


def merge_turns(messages: Iterable[Message], *, assistant_role: str) -> tuple[str, list[tuple[str, str]]]:
    """System text and alternating (role, text) turns, a turn's messages joined with a blank line."""
    system, turns = group_turns(messages, assistant_role=assistant_role)
    return system, [(role, "\n\n".join(m.content for m in group)) for role, group in turns]


def count(value: Any) -> int:
    """A token count from a JSON field: a non-negative int, else 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(0, int(value))


def parse_json(call: UpstreamCall, content: bytes | str, *, what: str = "response body") -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        snippet = content[:120] if isinstance(content, str) else content[:120].decode("utf-8", "replace")
        raise call.error(FailureClass.BAD_RESPONSE, f"the {what} is not JSON: {snippet!r}") from None


def error_from_payload(
    call: UpstreamCall,
    status: int | None,
    payload: Any,
    text: str,
    *,
    headers: httpx.Headers | None = None,
    usage: Usage | None = None,
) -> ProviderError:
    failure_class, message = call.classify(status, payload, text)
    retry_after = parse_retry_after(headers, payload) if headers is not None else gemini_retry_delay(payload)
    return call.error(failure_class, message, status=status, retry_after_s=retry_after, usage=usage)


def raise_for_status(call: UpstreamCall, response: httpx.Response, content: bytes) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    if 300 <= status < 400:
        raise redirect_error(response, api_key=call.api_key)
    text = content[:MAX_ERROR_BODY].decode("utf-8", errors="replace")
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    raise error_from_payload(call, status, payload, text, headers=response.headers)


def default_classify(status: int | None, message: str) -> tuple[FailureClass, str]:
    failure_class = class_for_status(status) if status else FailureClass.SERVER_ERROR
    return failure_class, message


async def post_json(client: httpx.AsyncClient, call: UpstreamCall) -> Any:
    """One non-streaming POST: the parsed 2xx body, or a ProviderError."""
    try:
        response = await client.post(call.url, headers=call.headers, json=call.body, timeout=call.timeout)
    except httpx.HTTPError as exc:
        raise from_transport(exc, api_key=call.api_key) from None
    raise_for_status(call, response, response.content)
    return parse_json(call, response.content)


@asynccontextmanager
async def open_stream(client: httpx.AsyncClient, call: UpstreamCall) -> AsyncIterator[httpx.Response]:
    """A streaming POST whose status was checked; the response is closed on exit."""
    request = client.build_request(
        "POST", call.url, headers=call.headers, json=call.body, timeout=call.timeout
    )
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise from_transport(exc, api_key=call.api_key) from None
    try:
        content_type = response.headers.get("content-type", "")
        if not 200 <= response.status_code < 300 or content_type.startswith("application/json"):
            content = await _read_capped(call, response)
            raise_for_status(call, response, content)
            raise _json_instead_of_stream(call, content)
        yield response
    finally:
        await response.aclose()


def _json_instead_of_stream(call: UpstreamCall, content: bytes) -> ProviderError:
    """A 200 JSON body where an event stream was asked for: an error object, or a bad response."""
    payload = parse_json(call, content)
    first = payload[0] if isinstance(payload, list) and payload else payload
    if isinstance(first, dict) and "error" in first:
        return error_from_payload(call, None, first, content.decode("utf-8", "replace"))
    return call.error(FailureClass.BAD_RESPONSE, "expected an event stream, the upstream sent JSON")


async def _read_capped(call: UpstreamCall, response: httpx.Response) -> bytes:
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            parts.append(chunk)
            size += len(chunk)
            if size >= MAX_ERROR_BODY:
                break
    except httpx.HTTPError as exc:
        raise from_transport(exc, api_key=call.api_key) from None
    return b"".join(parts)


async def iter_sse(call: UpstreamCall, response: httpx.Response) -> AsyncIterator[SSEEvent]:
    """The response's events; transport and framing failures become ProviderErrors."""
    try:
        async for event in aiter_sse(response.aiter_bytes()):
            yield event
    except httpx.HTTPError as exc:
        raise from_transport(exc, api_key=call.api_key) from None
    except SSEError as exc:
        raise call.error(FailureClass.BAD_RESPONSE, str(exc)) from None


def stream_ended_early(call: UpstreamCall, *, got_text: bool, usage: Usage | None) -> ProviderError:
    if not got_text:
        return call.error(FailureClass.BAD_RESPONSE, "the stream ended before any content", usage=usage)
    return call.error(
        FailureClass.CONNECTION_ERROR,
        "the stream ended after some content but without its end marker (truncated)",
        usage=usage,
    )


def with_usage(exc: ProviderError, usage: Usage | None) -> ProviderError:
    """Attach the usage counted so far to an error raised mid-stream."""
    if exc.usage is None and usage is not None:
        exc.usage = usage
    return exc


class StreamState(Protocol):
    """What one stream has said so far (per protocol): text out of each event, then the end.
    A protocol that streams tool calls also leaves the last event's pieces in `tool_deltas`."""

    usage: Usage | None

    def feed(self, event: SSEEvent) -> str: ...

    def final_event(self) -> StreamEvent: ...


class HttpAdapter:
    """The shape every HTTP adapter shares; a protocol supplies the call, the parser and a stream state."""

    kind: str

    def call_for(self, request: ChatRequest, *, stream: bool) -> UpstreamCall:
        raise NotImplementedError

    def parse(self, call: UpstreamCall, data: Any, model: str) -> ChatResponse:
        raise NotImplementedError

    def stream_state(self, call: UpstreamCall) -> StreamState:
        raise NotImplementedError

    async def complete(self, request: ChatRequest, client: httpx.AsyncClient) -> ChatResponse:
        call = self.call_for(request, stream=False)
        return self.parse(call, await post_json(client, call), request.model)

    async def stream(self, request: ChatRequest, client: httpx.AsyncClient) -> AsyncIterator[StreamEvent]:
        call = self.call_for(request, stream=True)
        state = self.stream_state(call)
        try:
            async with open_stream(client, call) as response, aclosing(iter_sse(call, response)) as events:
                async for event in events:
                    text = state.feed(event)
                    tool_deltas = getattr(state, "tool_deltas", ())
                    refusal = getattr(state, "refusal", "")
                    if text or tool_deltas or refusal:
                        yield StreamEvent(
                            text=text,
                            tool_calls=tool_deltas,
                            logprobs=getattr(state, "logprobs", None),
                            refusal=refusal,
                        )
        except ProviderError as exc:
            raise with_usage(exc, state.usage) from None
        yield state.final_event()
