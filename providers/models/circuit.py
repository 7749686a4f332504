"""Operators' hands on the circuit breaker: who opened, closed or reset a circuit, and when."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from .provider import Provider


class CircuitActionKind(models.TextChoices):
    OPEN = "open", "Opened by hand"
    CLOSE = "close", "Closed by hand"
    RESET = "reset", "Reset by hand"


class CircuitAction(models.Model):
    """One manual change to a circuit (provider + model), as breaker_controls made it."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="circuit_actions")
    model = models.CharField(max_length=200)
    action = models.CharField(max_length=8, choices=CircuitActionKind.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150, blank=True)  # kept when the user is deleted
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["provider", "model", "-created_at"], name="circuitaction_latest")]

    def __str__(self) -> str:
        return f"{self.get_action_display()}: {self.provider} / {self.model}"
