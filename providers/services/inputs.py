"""Validate and normalise what callers send: chat messages and parameters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from providers.engine.types import ChatParams, Message

ROLES = {"system", "user", "assistant", "developer"}


class InvalidRequest(ValueError):
    """The caller's input is wrong; `field` names where (e.g. messages[2].role)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")
        self.message = message


def _content_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: text only
        texts = []
        for j, part in enumerate(content):
            if (
                not isinstance(part, Mapping)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise InvalidRequest(f"{where}.content[{j}]", "only text content parts are supported")
            texts.append(part["text"])
        return "".join(texts)
    raise InvalidRequest(f"{where}.content", "must be a string or a list of text parts")


def messages_normalise(messages: Sequence[Message | Mapping[str, Any]]) -> tuple[Message, ...]:
    if not isinstance(messages, Sequence) or isinstance(messages, str | bytes) or not messages:
        raise InvalidRequest("messages", "must be a non-empty list of messages")
    out = []
    for i, raw in enumerate(messages):
        where = f"messages[{i}]"
        if isinstance(raw, Message):
            role, content = raw.role, raw.content
        elif isinstance(raw, Mapping):
            role, content = raw.get("role"), _content_text(raw.get("content"), where)
        else:
            raise InvalidRequest(where, "must be an object with role and content")
        if role not in ROLES:
            raise InvalidRequest(f"{where}.role", f"must be one of system, user, assistant (got {role!r})")
        role = "system" if role == "developer" else role
        out.append(Message(role=role, content=content.replace("\r\n", "\n")))
    if all(m.role == "system" for m in out):
        raise InvalidRequest("messages", "needs at least one user message")
    return tuple(out)


def _number(params: Mapping, name: str, low: float, high: float) -> float | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(name, "must be a number") from None
    if not low <= number <= high:
        raise InvalidRequest(name, f"must be between {low:g} and {high:g}")
    return number


def _integer(params: Mapping, name: str, low: int, high: int) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not (
        isinstance(value, int) or (isinstance(value, str) and value.isdigit())
    ):
        raise InvalidRequest(name, "must be a whole number")
    number = int(value)
    if not low <= number <= high:
        raise InvalidRequest(name, f"must be between {low} and {high}")
    return number


def _stop(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value) and len(value) <= 4:
        return tuple(value)
    raise InvalidRequest("stop", "must be a string or a list of at most 4 strings")


def params_normalise(params: ChatParams | Mapping[str, Any] | None) -> ChatParams:
    if params is None:
        return ChatParams()
    if isinstance(params, ChatParams):
        return params
    user = params.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("user", "must be a string")
    return ChatParams(
        temperature=_number(params, "temperature", 0, 2),
        max_tokens=_integer(params, "max_tokens", 1, 1_000_000),
        top_p=_number(params, "top_p", 0, 1),
        stop=_stop(params.get("stop")),
        seed=_integer(params, "seed", 0, 2**63 - 1),
        presence_penalty=_number(params, "presence_penalty", -2, 2),
        frequency_penalty=_number(params, "frequency_penalty", -2, 2),
        user=user,
    )
