"""Rollups of the ledger: what makes the dashboards fast at millions of attempts.

Each table sums ledger rows per time bucket (one UTC hour, or one UTC day) and per value of
every dimension a dashboard filters or groups by. A bucket is the UTC start of its hour or
day. Dimensions never hold NULL (0, -1 or "" stand for "none") so one unique key identifies
a row and the incremental upsert can add to it. Maintained by dashboards.rollups (a receiver
of providers.signals.ledger_rows_written, plus a rebuild command and a periodic task); read
only by dashboards.selectors. See docs in dashboards/rollups/__init__.py.
"""

from __future__ import annotations

from django.db import models

from dashboards.rollups.bins import LATENCY_FIELDS, TTFT_FIELDS


class Grain(models.TextChoices):
    HOUR = "h", "hour"
    DAY = "d", "day"


_MONEY = {"max_digits": 20, "decimal_places": 10, "default": 0}


def _histogram_fields(names: tuple[str, ...]) -> dict[str, models.Field]:
    return {name: models.PositiveIntegerField(default=0) for name in names}


class AttemptRollup(models.Model):
    """Attempts per bucket x chain x source x provider x model x step x outcome x injected."""

    grain = models.CharField(max_length=1, choices=Grain.choices)
    bucket = models.DateTimeField()
    chain_id = models.IntegerField(default=0)  # 0: no chain
    source = models.CharField(max_length=16)
    provider_name = models.CharField(max_length=100)
    provider_kind = models.CharField(max_length=32)
    model = models.CharField(max_length=200)
    step_position = models.IntegerField(default=0)
    outcome = models.CharField(max_length=24)
    injected = models.BooleanField(default=False)

    attempts = models.BigIntegerField(default=0)
    latency_ms_sum = models.FloatField(default=0)
    ttft_count = models.BigIntegerField(default=0)
    ttft_ms_sum = models.FloatField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(**_MONEY)
    unpriced = models.BigIntegerField(default=0)  # attempts with usage but no price
    # Histograms of latency_ms and ttft_ms in the fixed bins of dashboards.rollups.bins.
    locals().update(_histogram_fields(LATENCY_FIELDS))
    locals().update(_histogram_fields(TTFT_FIELDS))

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "grain",
                    "bucket",
                    "chain_id",
                    "source",
                    "provider_name",
                    "provider_kind",
                    "model",
                    "step_position",
                    "outcome",
                    "injected",
                ],
                name="attemptrollup_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.grain} {self.bucket:%Y-%m-%d %H:%M} {self.provider_name}/{self.model} {self.outcome}"


class CompletionRollup(models.Model):
    """Finished completions per bucket x chain x source x key x outcome x answer x injected."""

    grain = models.CharField(max_length=1, choices=Grain.choices)
    bucket = models.DateTimeField()
    chain_id = models.IntegerField(default=0)  # 0: no chain
    source = models.CharField(max_length=16)
    gateway_key_prefix = models.CharField(max_length=32, blank=True)
    outcome = models.CharField(max_length=24)
    injected = models.BooleanField(default=False)
    answered_provider_id = models.IntegerField(default=0)  # 0: no answer
    answered_model = models.CharField(max_length=200, blank=True)
    answered_step = models.IntegerField(default=-1)  # -1: no answer
    fallback_used = models.BooleanField(default=False)

    completions = models.BigIntegerField(default=0)
    attempt_count = models.BigIntegerField(default=0)
    latency_ms_sum = models.FloatField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(**_MONEY)
    unpriced = models.BigIntegerField(default=0)  # completions with some unpriced usage

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "grain",
                    "bucket",
                    "chain_id",
                    "source",
                    "gateway_key_prefix",
                    "outcome",
                    "injected",
                    "answered_provider_id",
                    "answered_model",
                    "answered_step",
                    "fallback_used",
                ],
                name="completionrollup_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.grain} {self.bucket:%Y-%m-%d %H:%M} chain {self.chain_id} {self.outcome}"


class ProviderStatus(models.Model):
    """The latest success and the latest provider error seen per provider (and injected flag)."""

    provider_name = models.CharField(max_length=100)
    injected = models.BooleanField(default=False)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error_class = models.CharField(max_length=24, blank=True)
    last_error_status = models.IntegerField(null=True, blank=True)
    last_error_message = models.TextField(blank=True)  # masked by the engine before recording

    class Meta:
        verbose_name_plural = "provider statuses"
        constraints = [
            models.UniqueConstraint(fields=["provider_name", "injected"], name="providerstatus_key")
        ]

    def __str__(self) -> str:
        return self.provider_name
