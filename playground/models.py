"""A playground run: one prompt sent from the browser, kept so it can be reopened and replayed.

The ledger (providers.Completion / Attempt) holds what happened upstream; a run holds what
the user asked (the whole conversation sent, parameters, injected faults) and the answer
(its text and the tool calls it made), which the ledger never stores. `completion_id` joins
the two. Messages are OpenAI-shaped dicts (playground.messages); an attached image is a data:
URL inside its user message, so `title` keeps a line of the prompt for the history list,
which never loads the messages.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from . import messages as shapes

LOST_AFTER = timedelta(hours=1)  # the longest chain deadline allowed is 3600 s


class RunStatus(models.TextChoices):
    PENDING = "pending"  # created, not started yet
    RUNNING = "running"
    DONE = "done"


class PlaygroundRun(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    compare_group = models.UUIDField(null=True, blank=True, db_index=True)
    completion_id = models.UUIDField(null=True, blank=True, db_index=True)
    chain_slug = models.CharField(max_length=100)
    messages = models.JSONField(default=list)  # every message sent, system first
    params = models.JSONField(default=dict)
    faults = models.JSONField(default=list)  # FaultSpec.as_dict() rows
    stream = models.BooleanField(default=True)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING)
    outcome = models.CharField(max_length=24, blank=True)  # a CompletionOutcome, or "invalid" / "error"
    answer = models.TextField(blank=True)
    tool_calls = models.JSONField(default=list, blank=True)  # the answer's calls, OpenAI's shape
    title = models.CharField(max_length=200, blank=True)  # what this run added, for the history
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "created_at"], name="playgroundrun_user_time")]

    def __str__(self) -> str:
        return f"{self.chain_slug} {self.created_at:%Y-%m-%d %H:%M} {self.outcome or self.status}"

    @property
    def prompt(self) -> str:
        """The text of the last user message in the conversation."""
        user = next((m for m in reversed(self.messages) if m.get("role") == "user"), None)
        return shapes.text_of(user.get("content")) if user else ""

    @property
    def images(self) -> list[str]:
        """The image URLs this run's own user message attached (data: URLs included)."""
        added = shapes.added_messages(self.messages)
        return [url for m in added if m.get("role") == "user" for url in shapes.images_of(m.get("content"))]

    @property
    def tool_results(self) -> list[dict[str, str]]:
        """The tool results this run sent (it answered the previous run's tool calls), or []."""
        return shapes.tool_results(self.messages)

    @property
    def calls(self) -> list[dict[str, str]]:
        """The answer's tool calls: id, name and arguments pretty-printed."""
        return shapes.calls_for_display(self.tool_calls)

    @property
    def wants_json(self) -> bool:
        return (self.params.get("response_format") or {}).get("type") in ("json_object", "json_schema")

    @property
    def json_answer(self) -> str | None:
        """The answer pretty-printed, when a JSON response format was asked for and it is JSON."""
        return shapes.pretty_json(self.answer) if self.wants_json else None

    @property
    def system(self) -> str:
        return next((shapes.text_of(m["content"]) for m in self.messages if m.get("role") == "system"), "")

    @property
    def finished(self) -> bool:
        return self.status == RunStatus.DONE

    @property
    def lost(self) -> bool:
        """Still marked running long after any chain deadline: the server stopped mid-run."""
        return self.status == RunStatus.RUNNING and timezone.now() - self.created_at > LOST_AFTER
