"""The ledger: one Completion per request, one Attempt per upstream call.

Every dashboard reads these. Rows are written by the write-behind recorder
(providers.services.recorder), so ids are made here, client-side, before any insert:
an Attempt can land before its Completion's final row and still point at it.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

from django.conf import settings
from django.db import models

from providers.engine.types import FailureClass

# Random bytes for request ids, drawn from the OS a few hundred ids' worth at a time:
# os.urandom releases the GIL, and on a serving process that handed the interpreter to the
# ledger writer thread (or any other) in the middle of every request, for as long as that
# thread cared to run (measured: tens of microseconds a request, milliseconds at the tail).
_POOL_BYTES = 4000
_pool = bytearray()
_pool_lock = threading.Lock()


def _random_bytes(n: int) -> bytes:
    global _pool
    with _pool_lock:
        if len(_pool) < n:
            _pool = bytearray(os.urandom(_POOL_BYTES))
        taken = bytes(_pool[:n])
        del _pool[:n]
        return taken


def _forget_pool() -> None:  # a forked child must not hand out its parent's bytes again
    global _pool
    _pool = bytearray()


os.register_at_fork(after_in_child=_forget_pool)


def new_request_id() -> uuid.UUID:
    """A UUIDv7: time-ordered, so inserts stay at the end of the index."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(_random_bytes(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


class Source(models.TextChoices):
    PLAYGROUND = "playground"
    API = "api"
    BATCH = "batch"
    PROBE = "probe"


class CompletionOutcome(models.TextChoices):
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"  # every step failed, or a stop-class error
    BUDGET_BLOCKED = "budget_blocked"
    CACHE_HIT = "cache_hit"
    STREAM_INTERRUPTED = "stream_interrupted"
    CANCELLED = "cancelled"


AttemptOutcome = models.TextChoices(
    "AttemptOutcome", [("SUCCESS", "success")] + [(c.name, c.value) for c in FailureClass]
)

_MONEY = {"max_digits": 16, "decimal_places": 10}


class Completion(models.Model):
    id = models.UUIDField(primary_key=True, default=new_request_id, editable=False)
    created_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    chain = models.ForeignKey(
        "providers.FallbackChain", null=True, blank=True, on_delete=models.SET_NULL, db_constraint=False
    )
    chain_slug = models.CharField(max_length=100, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, db_constraint=False
    )
    gateway_key_prefix = models.CharField(max_length=32, blank=True, db_index=True)
    stream = models.BooleanField(default=False)
    outcome = models.CharField(max_length=24, choices=CompletionOutcome.choices)
    error_class = models.CharField(max_length=24, blank=True)
    error_message = models.TextField(blank=True)
    answered_provider = models.ForeignKey(
        "providers.Provider",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    answered_model = models.CharField(max_length=200, blank=True)
    answered_step = models.PositiveIntegerField(null=True, blank=True)
    fallback_used = models.BooleanField(default=False)
    attempt_count = models.PositiveIntegerField(default=0)
    latency_ms = models.FloatField(null=True, blank=True)
    ttft_ms = models.FloatField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(default=0, **_MONEY)
    unpriced = models.BooleanField(default=False)
    injected = models.BooleanField(default=False, help_text="Faults were injected (playground).")
    retry_after_s = models.FloatField(null=True, blank=True)
    needs = models.CharField(
        max_length=120,
        blank=True,
        help_text="Capabilities the request needed (tools, images, json_schema ...).",
    )
    # A budget_blocked row is a sample: it stands for every refusal of its budget, chain and
    # caller in its interval (providers.services.budget_refusals). Dashboards sum this.
    represents = models.PositiveIntegerField(
        default=1, db_default=1, help_text="How many requests this row stands for (sampled refusals)."
    )
    # The order the steps were to be tried in and why: {"strategy", "order": [{"step",
    # "provider", "model"}], "why"} (providers.engine.routing.Route.as_dict). Null: not recorded.
    route = models.JSONField(null=True, blank=True)
    # The parameters the request set, not the defaults: {"temperature": 0.2, "tools": ["name"],
    # "response_format": "json_schema answer"...} (providers.services.ledger.params_recorded);
    # {} when none was set, null on rows from before it was recorded.
    params = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["chain", "created_at"], name="completion_chain_time"),
            models.Index(fields=["outcome", "created_at"], name="completion_outcome_time"),
            models.Index(fields=["source", "created_at"], name="completion_source_time"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.outcome}"


class Attempt(models.Model):
    completion = models.ForeignKey(
        Completion, on_delete=models.CASCADE, related_name="attempts", db_constraint=False
    )
    started_at = models.DateTimeField(db_index=True)
    # Copied from the completion so dashboards filter attempts without a join.
    chain = models.ForeignKey(
        "providers.FallbackChain", null=True, blank=True, on_delete=models.SET_NULL, db_constraint=False
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    step_position = models.PositiveIntegerField()
    provider = models.ForeignKey(
        "providers.Provider", null=True, blank=True, on_delete=models.SET_NULL, db_constraint=False
    )
    provider_name = models.CharField(max_length=100)
    provider_kind = models.CharField(max_length=32)
    model = models.CharField(max_length=200)
    retry_index = models.PositiveSmallIntegerField(default=0)
    outcome = models.CharField(max_length=24, choices=AttemptOutcome.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    retry_after_s = models.FloatField(null=True, blank=True)
    latency_ms = models.FloatField()
    ttft_ms = models.FloatField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(null=True, blank=True, **_MONEY)
    unpriced = models.BooleanField(default=False)
    error_message = models.TextField(blank=True)
    injected = models.BooleanField(default=False)
    needs = models.CharField(max_length=120, blank=True)  # as on the completion

    class Meta:
        ordering = ["started_at", "id"]
        constraints = [
            # One row per try of a step: what makes writing an attempt twice (a journal replay) a no-op.
            models.UniqueConstraint(
                fields=["completion", "step_position", "retry_index"], name="attempt_unique_try"
            )
        ]
        indexes = [
            models.Index(fields=["chain", "started_at"], name="attempt_chain_time"),
            models.Index(fields=["provider", "started_at"], name="attempt_provider_time"),
            models.Index(fields=["outcome", "started_at"], name="attempt_outcome_time"),
            # The attempts with an error text, alone: what the request log's error search reads
            # (a tenth of the table, or less), not every attempt.
            models.Index(
                fields=["started_at", "completion"],
                condition=~models.Q(error_message=""),
                name="attempt_with_error_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider_name}/{self.model} #{self.retry_index} {self.outcome}"


class JournalCursor(models.Model):
    """How far a process's ledger journal is in the database (written in the same transaction
    as the rows) and how far its rows were announced to the rollups: what a replay after the
    process died must still write, and what it must still announce."""

    journal = models.CharField(max_length=200, primary_key=True)  # the journal folder's name
    committed_segment = models.PositiveIntegerField(default=0)
    committed_offset = models.BigIntegerField(default=0)
    announced_segment = models.PositiveIntegerField(default=0)
    announced_offset = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.journal} @ {self.committed_segment}:{self.committed_offset}"
