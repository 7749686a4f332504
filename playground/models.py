"""A playground run: one prompt sent from the browser, kept so it can be reopened and replayed.

The ledger (providers.Completion / Attempt) holds what happened upstream; a run holds what
the user asked (the whole conversation sent, parameters, injected faults) and the answer
text, which the ledger never stores. `completion_id` joins the two.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

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
        """The user message this run added to the conversation."""
        return next((m["content"] for m in reversed(self.messages) if m.get("role") == "user"), "")

    @property
    def system(self) -> str:
        return next((m["content"] for m in self.messages if m.get("role") == "system"), "")

    @property
    def finished(self) -> bool:
        return self.status == RunStatus.DONE

    @property
    def lost(self) -> bool:
        """Still marked running long after any chain deadline: the server stopped mid-run."""
        return self.status == RunStatus.RUNNING and timezone.now() - self.created_at > LOST_AFTER
