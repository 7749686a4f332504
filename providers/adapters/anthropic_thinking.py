"""Extended thinking on Anthropic's Messages API, from ChatParams.reasoning_effort.

reasoning_effort is a hint, never a need: it becomes `thinking: {"type": "enabled",
"budget_tokens": N}` with N = 1024 for minimal and low, 4096 for medium, 16384 for high, and
nothing for none. Thinking is left off, and the request is otherwise sent unchanged, when:

- the step's model does not reason (ChatRequest.can("reasoning") is false; a model missing
  from the capability table is assumed to reason);
- the request forces a tool (tool_choice any / tool: a required or named tool choice, or the
  forced answer tool of a JSON answer, anthropic_json.py): Anthropic refuses extended thinking
  with a forced tool choice;
- the conversation's last assistant turn called tools (a tool loop in progress): with thinking
  on, Anthropic requires that turn to start with the thinking blocks it produced, signed, and
  RANA's OpenAI-shaped conversation cannot carry them back. Thinking resumes on the next turn.

With thinking on, max_tokens must exceed the budget: the body's max_tokens becomes the
budget plus the max_tokens the answer would have had otherwise (the request's, else the
provider option `max_tokens`, else 4096), so the visible answer keeps its own allowance.
temperature, top_p and top_k are not compatible with thinking and are left out.

Responses: thinking and redacted_thinking blocks (and thinking_delta / signature_delta
events) are never part of the answer text; nothing extra is counted, since Anthropic's
output_tokens already include the thinking.
"""

from __future__ import annotations

from typing import Any

from providers.engine.types import ChatRequest, Message

from .common import group_turns

BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
_SAMPLING = ("temperature", "top_p", "top_k")


def thinking_budget(request: ChatRequest, *, forced_tool: bool) -> int | None:
    """The thinking budget for this request, or None to leave thinking off."""
    budget = BUDGETS.get(request.params.reasoning_effort or "")
    if budget is None or forced_tool or not request.can("reasoning") or in_tool_loop(request.messages):
        return None
    return budget


def in_tool_loop(messages: tuple[Message, ...]) -> bool:
    """Whether the last assistant turn (consecutive assistant messages merged) called tools."""
    _, turns = group_turns(messages, assistant_role="assistant")
    last = next((group for role, group in reversed(turns) if role == "assistant"), [])
    return any(m.tool_calls for m in last)


def add_thinking(body: dict[str, Any], budget: int) -> None:
    """Turn thinking on in a body whose max_tokens is the answer's own allowance."""
    body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    body["max_tokens"] += budget
    for name in _SAMPLING:
        body.pop(name, None)
