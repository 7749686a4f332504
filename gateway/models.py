"""Gateway keys: how applications authenticate to RANA's OpenAI-compatible API.

A key is shown once when it is made (``rana_`` + 40 random characters). Only its visible
prefix (``rana_`` + the next 8 characters, unique) and the SHA-256 of the whole key are
stored: keys are high-entropy random strings, so a fast hash is enough and a database leak
does not reveal them.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

KEY_PREFIX = "rana_"
PREFIX_LENGTH = len(KEY_PREFIX) + 8


class GatewayKey(models.Model):
    name = models.CharField(max_length=100, help_text="Who or what uses this key, e.g. 'support-bot'.")
    prefix = models.CharField(max_length=32, unique=True, editable=False)
    key_hash = models.CharField("SHA-256 of the key", max_length=64, editable=False)
    allowed_chains = models.ManyToManyField(
        "providers.FallbackChain",
        blank=True,
        related_name="+",
        help_text="Chains this key may use. None selected: every chain.",
    )
    rpm_limit = models.PositiveIntegerField(
        "requests per minute", null=True, blank=True, help_text="Blank: no rate limit."
    )
    daily_budget_usd = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal(0))]
    )
    monthly_budget_usd = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal(0))]
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Blank: never expires.")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "gateway key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def status(self) -> str:
        if self.is_revoked:
            return "revoked"
        return "expired" if self.is_expired else "active"
