"""A batch run: a file of prompts sent through one chain in the background, one row per prompt."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class BatchStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


FINISHED = (BatchStatus.DONE, BatchStatus.CANCELLED)


class RowStatus(models.TextChoices):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Batch(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200, blank=True, help_text="The uploaded file's name.")
    chain_slug = models.SlugField(max_length=100)
    concurrency = models.PositiveSmallIntegerField(default=4)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=BatchStatus.choices, default=BatchStatus.QUEUED)
    total_rows = models.PositiveIntegerField(default=0)
    # Who asked: a user in the UI, or a gateway key (its prefix and budgets) through the API.
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    gateway_key_prefix = models.CharField(max_length=32, blank=True, db_index=True)
    key_daily_budget_usd = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    key_monthly_budget_usd = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The runner's lease: the task that runs the batch heartbeats it; a redelivered task takes
    # the batch over only once the heartbeat is older than RANA_BATCH_LEASE_S.
    runner_token = models.CharField(max_length=64, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"batch {self.id} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class BatchRow(models.Model):
    """One input row and, once run, its result: written once, where the row is still pending."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="rows")
    index = models.PositiveIntegerField()
    input_id = models.CharField(max_length=200, blank=True)
    prompt = models.TextField()
    messages = models.JSONField()
    status = models.CharField(max_length=16, choices=RowStatus.choices, default=RowStatus.PENDING)
    answer = models.TextField(blank=True)
    provider_name = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    latency_ms = models.FloatField(null=True, blank=True)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    error = models.TextField(blank=True)
    request_id = models.UUIDField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "index"]
        constraints = [models.UniqueConstraint(fields=["batch", "index"], name="batch_row_index_unique")]
        indexes = [models.Index(fields=["batch", "status"])]

    def __str__(self) -> str:
        return f"row {self.index} of {self.batch_id}"
