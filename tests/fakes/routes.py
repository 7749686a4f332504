"""Which endpoint a request hit, and what the fake remembers of it."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from .faults import Fault
from .http11 import RawRequest

PROTOCOLS = ("openai", "anthropic", "gemini")
_GEMINI = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)$")


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Any
    protocol: str | None  # None: not a chat endpoint (GET /v1/models, unknown paths)
    model: str | None
    stream: bool
    fault: Fault | None = None
    disconnected: threading.Event = field(default_factory=threading.Event)  # set by hang / stalled

    # --- what was asked, whatever the protocol's field names -------------------------------
    def _get(self, key: str) -> Any:
        return self.json.get(key) if isinstance(self.json, dict) else None

    @property
    def messages(self) -> Any:
        """OpenAI / Anthropic messages, Gemini contents."""
        return self._get("contents" if self.protocol == "gemini" else "messages")

    @property
    def tools(self) -> Any:
        return self._get("tools")

    @property
    def tool_choice(self) -> Any:
        """OpenAI / Anthropic tool_choice, Gemini toolConfig."""
        return self._get("toolConfig" if self.protocol == "gemini" else "tool_choice")

    @property
    def output_format(self) -> Any:
        """OpenAI response_format, Anthropic output_format, Gemini generationConfig."""
        key = {"openai": "response_format", "anthropic": "output_format", "gemini": "generationConfig"}
        return self._get(key.get(self.protocol or "", "response_format"))


def route(raw: RawRequest, payload: Any) -> tuple[str | None, str | None, bool]:
    body = payload if isinstance(payload, dict) else {}
    if raw.method == "POST" and raw.path == "/v1/chat/completions":
        return "openai", body.get("model"), bool(body.get("stream"))
    if raw.method == "POST" and raw.path == "/v1/messages":
        return "anthropic", body.get("model"), bool(body.get("stream"))
    match = _GEMINI.match(raw.path) if raw.method == "POST" else None
    if match:
        return "gemini", unquote(match["model"]), match["method"] == "streamGenerateContent"
    return None, None, False


def sent_key(protocol: str, headers: dict[str, str]) -> str:
    if protocol == "openai":
        return headers.get("authorization", "").removeprefix("Bearer ")
    return headers.get("x-api-key" if protocol == "anthropic" else "x-goog-api-key", "")


def models_payload(raw: RawRequest, models: list[str]) -> dict[str, Any] | None:
    if raw.method != "GET":
        return None
    if raw.path == "/v1beta/models":
        return {"models": [{"name": f"models/{m}", "displayName": m} for m in models]}
    if raw.path != "/v1/models":
        return None
    if "anthropic-version" in raw.headers:
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in models
        ]
        return {"data": data, "has_more": False, "first_id": models[0], "last_id": models[-1]}
    return {
        "object": "list",
        "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in models],
    }
