"""Alert rules (editable in the admin), the events they fired (the alert history) and one
delivery per event and channel (a webhook URL or an e-mail address), with every attempt."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, validate_email
from django.db import models
from django.utils import timezone


class RuleKind(models.TextChoices):
    BREAKER_OPEN = "breaker_open", "circuit opened"
    FALLBACK_RATE = "fallback_rate", "fallback rate of a chain"
    ERROR_RATE = "error_rate", "error rate of a provider"
    BUDGET = "budget", "budget spent"


class BudgetOwner(models.TextChoices):
    CHAIN = "chain"
    KEY = "key", "gateway key"


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


class AlertRule(models.Model):
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=RuleKind.choices)
    enabled = models.BooleanField(default=True)
    provider = models.ForeignKey(
        "providers.Provider", null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        help_text="Circuit opened, error rate: this provider (blank: every provider).",
    )  # fmt: skip
    chain = models.ForeignKey(
        "providers.FallbackChain", null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        help_text="Fallback rate, chain budget: this chain (blank: every chain).",
    )  # fmt: skip
    budget_owner = models.CharField(
        max_length=8, choices=BudgetOwner.choices, default=BudgetOwner.CHAIN,
        help_text="Budget: the chains' budgets or the gateway keys' budgets (daily and monthly).",
    )  # fmt: skip
    gateway_key = models.ForeignKey(
        "gateway.GatewayKey", null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        help_text="Gateway key budget: this key (blank: every key with a budget).",
    )  # fmt: skip
    threshold_pct = models.FloatField(
        "threshold (%)", default=80, validators=[MinValueValidator(0)],
        help_text="Rates: fire at this share of requests or calls or more. Budget: fire when this share "
        "of a limit is spent, and again at 100 %.",
    )  # fmt: skip
    window_s = models.PositiveIntegerField(
        "window (s)", default=300, validators=[MinValueValidator(30)],
        help_text="Rates are over the last window; one event per condition per window at most.",
    )  # fmt: skip
    min_requests = models.PositiveIntegerField(
        default=20,
        help_text="Rates: no verdict on fewer requests (fallback) or calls (errors) in the window.",
    )
    webhook_urls = models.TextField(blank=True, help_text="One URL per line; each gets a signed JSON POST.")
    emails = models.TextField("e-mail addresses", blank=True, help_text="One address per line.")
    webhook_secret_encrypted = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def webhook_url_list(self) -> list[str]:
        return _lines(self.webhook_urls)

    @property
    def email_list(self) -> list[str]:
        return _lines(self.emails)

    def clean(self) -> None:
        from providers.services import webhook_url_check

        errors = {}
        for url in self.webhook_url_list:
            try:
                webhook_url_check(url)
            except ValueError as exc:
                errors["webhook_urls"] = f"{url}: {exc}"
        for address in self.email_list:
            try:
                validate_email(address)
            except ValidationError:
                errors["emails"] = f"{address} is not an e-mail address"
        if self.kind == RuleKind.BUDGET and self.budget_owner == BudgetOwner.CHAIN and self.gateway_key_id:
            errors["gateway_key"] = "a chain budget rule names no gateway key"
        if errors:
            raise ValidationError(errors)


class AlertEvent(models.Model):
    """A condition of a rule that started to hold: at most one per rule, condition and window
    (`window_start`, the start of the rule's window it fired in); resolved when it stops holding."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="events")
    condition = models.CharField(max_length=200)  # what fired, as a stable key: "circuit:3:gpt-4o"
    summary = models.CharField(max_length=300)
    details = models.JSONField(default=dict)
    window_start = models.DateTimeField()
    fired_at = models.DateTimeField(default=timezone.now, db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-fired_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "condition", "window_start"], name="alert_event_once_per_window"
            )
        ]

    def __str__(self) -> str:
        return self.summary


class ChannelKind(models.TextChoices):
    WEBHOOK = "webhook"
    EMAIL = "email", "e-mail"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"  # queued, or failed and waiting for its next try
    SENT = "sent"
    FAILED = "failed"  # out of retries


class AlertDelivery(models.Model):
    """One event sent to one channel: the attempts made (time, HTTP status, error) and the outcome."""

    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=8, choices=ChannelKind.choices)
    target = models.CharField(max_length=500)  # the URL or the address
    status = models.CharField(max_length=8, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.JSONField(default=list)  # [{"at", "status_code", "error", "retry_in_s"}]
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "alert deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["event", "channel", "target"], name="alert_delivery_once_per_channel"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.target}: {self.status}"
