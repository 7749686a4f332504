"""The engine's vocabulary: the plain, ORM-free types every adapter and the engine share."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


class FailureClass(enum.StrEnum):
    """One vocabulary of failures, everywhere (docs/architecture.md)."""

    RATE_LIMITED = "rate_limited"
    QUOTA_EXHAUSTED = "quota_exhausted"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    BAD_RESPONSE = "bad_response"
    AUTH_ERROR = "auth_error"
    CONTEXT_LENGTH = "context_length"
    CONTENT_FILTER = "content_filter"
    INVALID_REQUEST = "invalid_request"
    CIRCUIT_OPEN = "circuit_open"
    STREAM_INTERRUPTED = "stream_interrupted"
    CANCELLED = "cancelled"
    CAPABILITY_SKIPPED = "capability_skipped"  # the step cannot serve what the request needs


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call an assistant asked for (OpenAI's shape): arguments as JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call: the first piece of a call has its id and name."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


# What the capability table says of a model (ModelCapability's columns).
CAPABILITIES = ("tools", "parallel_tools", "images", "json_object", "json_schema", "reasoning")


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image in a user turn: an http(s) URL or a data: URL (checked on the way in).

    `media_type` and `data` (base64, no prefix) are set for a data: URL, and for a URL once
    RANA fetched it for a protocol that cannot take images by reference (Gemini).
    """

    url: str
    detail: str | None = None  # auto | low | high (OpenAI's hint; other protocols ignore it)
    media_type: str | None = None
    data: str | None = field(default=None, repr=False)

    @property
    def inline(self) -> bool:
        return self.data is not None


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


ContentPart = TextPart | ImagePart


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "system" | "user" | "assistant" | "tool"
    content: str  # the text (of every text part, joined, when there are parts)
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant turn that called tools
    tool_call_id: str | None = None  # a tool turn: which call it answers
    parts: tuple[ContentPart, ...] = ()  # set only when the turn carries images, in order

    @property
    def images(self) -> tuple[ImagePart, ...]:
        return tuple(p for p in self.parts if isinstance(p, ImagePart))


@dataclass(frozen=True, slots=True)
class ChatParams:
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    user: str | None = None
    # Function tools as OpenAI describes them ({"type": "function", "function": {...}}).
    tools: tuple[Mapping[str, Any], ...] = ()
    tool_choice: str | Mapping[str, Any] | None = None  # none | auto | required | one function
    parallel_tool_calls: bool | None = None
    response_format: Mapping[str, Any] | None = None  # {"type": text | json_object | json_schema}
    # none | minimal | low | medium | high: a hint, sent only to models that reason (never a need)
    reasoning_effort: str | None = None
    n: int | None = None  # choices to generate (more than 1 needs "n")
    logprobs: bool | None = None  # token log probabilities of the answer (needs "logprobs")
    top_logprobs: int | None = None

    def needs(self) -> frozenset[str]:
        """The capabilities a step must have to serve these parameters."""
        needs = set()
        if self.tools:
            needs.add("tools")
        kind = (self.response_format or {}).get("type")
        if kind in ("json_object", "json_schema"):
            needs.add(kind)
        if self.n is not None and self.n > 1:
            needs.add("n")
        if self.logprobs:
            needs.add("logprobs")
        return frozenset(needs)


def request_needs(messages: tuple[Message, ...], params: ChatParams) -> frozenset[str]:
    """Everything a step must be able to do for this request: its parameters' needs, tools
    when the conversation already holds tool turns, images when a turn carries one."""
    needs = set(params.needs())
    for message in messages:
        if message.tool_calls or message.role == "tool":
            needs.add("tools")
        if message.parts and message.images:
            needs.add("images")
    return frozenset(needs)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One provider, as the adapters see it: decrypted key, checked base URL."""

    id: int | None
    name: str
    kind: str
    base_url: str
    api_key: str = field(default="", repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """What one call's HTTP client may wait; the engine bounds each attempt itself (fallback.py)."""

    connect_s: float = 5.0
    read_s: float = 30.0  # longest wait for any one read or write
    first_token_s: float = 15.0  # a stream's wait for its first token


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What one adapter call sends: one provider, one model."""

    provider: ProviderConfig
    model: str
    messages: tuple[Message, ...]
    params: ChatParams = ChatParams()
    timeouts: Timeouts = Timeouts()
    # What the step's model can do (the capability table); None: not listed, assume the protocol's.
    capabilities: frozenset[str] | None = None

    def can(self, capability: str) -> bool:
        return self.capabilities is None or capability in self.capabilities


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0  # part of input_tokens served from the provider's prompt cache
    reasoning_tokens: int = 0  # part of output_tokens spent on reasoning

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )


@dataclass(frozen=True, slots=True)
class Choice:
    """One more choice of an answer asked for with n > 1 (choice 0 is the response itself)."""

    text: str
    finish_reason: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: Any = None


@dataclass(slots=True)
class ChatResponse:
    text: str
    finish_reason: str | None  # normalised to OpenAI's: stop | length | content_filter | tool_calls
    usage: Usage | None
    model: str  # as the provider reported it
    response_id: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: Any = None  # OpenAI's choice logprobs object, as the provider sent it
    more_choices: tuple[Choice, ...] = ()  # choices 1.. when n > 1
    refusal: str | None = None  # the model declined (OpenAI's message.refusal): an answer, not an error


@dataclass(slots=True)
class StreamEvent:
    """One piece of a stream: some text or tool-call pieces, and/or final usage / finish reason."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()
    logprobs: Any = None  # the logprobs of this event's tokens (OpenAI's shape), when asked for
    refusal: str = ""  # a piece of the model's refusal (OpenAI's delta.refusal)

    @property
    def content(self) -> bool:
        """Text, a tool-call piece or a refusal piece: what counts as the first token (the commit point)."""
        return bool(self.text or self.tool_calls or self.refusal)


class ProviderError(Exception):
    """The one error adapters raise. The engine alone decides what to do with it."""

    def __init__(
        self,
        failure_class: FailureClass,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message)
        self.failure_class = FailureClass(failure_class)
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s
        self.usage = usage

    def __str__(self) -> str:
        status = f" HTTP {self.status}" if self.status else ""
        return f"{self.failure_class.value}{status}: {self.message}"


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None
