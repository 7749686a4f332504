"""OpenAI's response shapes, plus what happened: the x-rana-* headers and the `rana` object."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import orjson
from django.urls import reverse

from providers.services import redact
from providers.types import AttemptRecord, CompletionResult, Route, Usage, calls_made


def money(value: Decimal | None) -> str:
    """A USD amount as a plain decimal string ("0.000315"), never in exponent form."""
    if not value:
        return "0"
    return format(value.normalize(), "f")


def completion_id(request_id: uuid.UUID) -> str:
    return f"chatcmpl-{request_id.hex}"


@functools.cache
def _timeline_prefix() -> str:
    return reverse("completions:lookup")


def timeline_url(request_id: uuid.UUID | None) -> str | None:
    """Where the UI shows this completion's timeline (a path on this server)."""
    return f"{_timeline_prefix()}{request_id}/" if request_id else None


def attempt_json(attempt: AttemptRecord) -> dict[str, Any]:
    return {
        "step": attempt.step_position,
        "provider": attempt.provider_name,
        "model": attempt.model,
        "retry": attempt.retry_index,
        "outcome": attempt.outcome,
        "http_status": attempt.http_status,
        "latency_ms": round(attempt.latency_ms, 2),
        "cost_usd": None if attempt.cost_usd is None else money(attempt.cost_usd),
        "error": redact(attempt.error_message) if attempt.error_message else None,
    }


def rana_meta(
    *,
    request_id: uuid.UUID | None,
    chain: str,
    provider: str | None,
    model: str | None,
    fallback: bool,
    attempts: Sequence[AttemptRecord],
    cost_usd: Decimal | None,
    unpriced: bool = False,
    cache_hit: bool = False,
    route: Route | None = None,
) -> dict[str, Any]:
    """What happened: who answered, every attempt, and the order of the steps (the chain's
    strategy, the steps in the order they were to be tried, and why)."""
    order = route.as_dict() if route is not None else {"strategy": None, "order": [], "why": None}
    return {
        "request_id": str(request_id) if request_id else None,
        "chain": chain,
        "provider": provider,
        "model": model,
        "fallback": fallback,
        "attempt_count": calls_made(attempts),
        "cost_usd": None if cost_usd is None else money(cost_usd),
        "unpriced": unpriced,
        "cache_hit": cache_hit,
        "attempts": [attempt_json(a) for a in attempts],
        **order,
        "timeline_url": timeline_url(request_id),
    }


def result_meta(result: CompletionResult) -> dict[str, Any]:
    return rana_meta(
        request_id=result.request_id,
        chain=result.chain_slug,
        provider=result.provider_name,
        model=result.model,
        fallback=result.fallback_used,
        attempts=result.attempts,
        cost_usd=result.cost_usd,
        unpriced=result.unpriced,
        cache_hit=result.cache_hit,
        route=result.route,
    )


def rana_headers(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """The x-rana-* headers for a `rana` object (cost only when it is known)."""
    headers = [
        ("x-rana-request-id", meta["request_id"] or ""),
        ("x-request-id", meta["request_id"] or ""),
        ("x-rana-chain", meta["chain"] or ""),
        ("x-rana-provider", meta["provider"] or ""),
        ("x-rana-model", meta["model"] or ""),
        ("x-rana-attempts", str(meta["attempt_count"])),
        ("x-rana-fallback", "true" if meta["fallback"] else "false"),
    ]
    if meta["cost_usd"] is not None:
        headers.append(("x-rana-cost-usd", meta["cost_usd"]))
    if meta["cache_hit"]:
        headers.append(("x-rana-cache", "hit"))
    return [(name, value.encode("ascii", "replace").decode()) for name, value in headers]


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def answer_usage(result: CompletionResult) -> Usage:
    """The usage of the attempt that answered (failed attempts are in the `rana` object)."""
    answered = next((a for a in reversed(result.attempts) if a.ok), None)
    if answered is not None and answered.usage is not None:
        return answered.usage
    return result.usage or Usage()


def message_json(result: CompletionResult, *, legacy: bool = False) -> dict[str, Any]:
    """The answer as OpenAI's assistant message: content null when it is only tool calls.
    `legacy` (the request used `functions`): the first call as `function_call`, as OpenAI did."""
    message: dict[str, Any] = {"role": "assistant", "content": result.text, "refusal": result.refusal}
    if result.refusal and not result.text:
        message["content"] = None
    if result.tool_calls and legacy:
        call = result.tool_calls[0]
        message["content"] = result.text or None
        message["function_call"] = {"name": call.name, "arguments": call.arguments}
    elif result.tool_calls:
        message["content"] = result.text or None
        message["tool_calls"] = _tool_calls_json(result.tool_calls)
    return message


def _tool_calls_json(calls) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]


def _more_choices_json(result: CompletionResult) -> list[dict[str, Any]]:
    """Choices 1.. of an answer asked for with n > 1."""
    out = []
    for index, choice in enumerate(result.more_choices, start=1):
        message: dict[str, Any] = {"role": "assistant", "content": choice.text, "refusal": None}
        if choice.tool_calls:
            message["content"] = choice.text or None
            message["tool_calls"] = _tool_calls_json(choice.tool_calls)
        out.append(
            {
                "index": index,
                "message": message,
                "logprobs": choice.logprobs,
                "finish_reason": choice.finish_reason or "stop",
            }
        )
    return out


def completion_body(
    result: CompletionResult, created: int, meta: dict[str, Any], *, legacy: bool = False
) -> bytes:
    finish = result.finish_reason or "stop"
    return orjson.dumps(
        {
            "id": completion_id(result.request_id),
            "object": "chat.completion",
            "created": created,
            "model": result.model,
            "choices": [
                {
                    "index": 0,
                    "message": message_json(result, legacy=legacy),
                    "logprobs": result.logprobs,
                    "finish_reason": "function_call" if legacy and finish == "tool_calls" else finish,
                },
                *_more_choices_json(result),
            ],
            "usage": usage_json(answer_usage(result)),
            "system_fingerprint": None,
            "rana": meta,
        }
    )
