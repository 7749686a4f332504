"""Fallback chains: the ordered steps a request walks, the order it tries them in, and the limits
that bound it."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from .provider import Provider


class ContentFilterPolicy(models.TextChoices):
    STOP = "stop", "Stop: return the refusal"
    FALLBACK = "fallback", "Fall back to the next step"


class ChainStrategy(models.TextChoices):
    """The order a request tries the steps in, chosen per request before the walk
    (providers.services.routing). Steps a strategy has no figure for keep their places."""

    ORDERED = "ordered", "Ordered: the configured order"
    WEIGHTED = "weighted", "Weighted: one step drawn first by weight, the rest in order"
    LOWEST_LATENCY = "lowest_latency", "Lowest latency first (recent p50)"
    CHEAPEST_FIRST = "cheapest_first", "Cheapest first (estimated cost of the request)"
    HEALTHIEST_FIRST = "healthiest_first", "Healthiest first (health score)"


class BodyLogging(models.TextChoices):
    """Whether a chain's requests keep their messages and answer (providers.models.body)."""

    OFF = "off", "Off: keep no messages or answers"
    ON = "on", "On: keep the messages and the answer"
    FIRST_CHARS = "first_chars", "The first N characters of each message and of the answer"


class FallbackChain(models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=100, unique=True, help_text="The model name API callers use.")
    description = models.TextField(blank=True)
    is_default = models.BooleanField(default=False)
    default_retries = models.PositiveSmallIntegerField(
        default=1,
        validators=[MaxValueValidator(10)],
        help_text="Retries per step after its first attempt (a step may override).",
    )
    backoff_base_s = models.FloatField(
        "backoff base (s)", default=0.5, validators=[MinValueValidator(0), MaxValueValidator(60)]
    )
    backoff_cap_s = models.FloatField(
        "backoff cap (s)", default=8.0, validators=[MinValueValidator(0), MaxValueValidator(300)]
    )
    connect_timeout_s = models.FloatField(
        "connect timeout (s)",
        default=5.0,
        validators=[MinValueValidator(0.1), MaxValueValidator(60)],
        help_text="Longest wait to connect to a provider (part of each attempt's own timeout).",
    )
    step_timeout_s = models.FloatField(
        "step timeout (s)",
        default=30.0,
        validators=[MinValueValidator(0.1), MaxValueValidator(600)],
        help_text="Bound of one whole attempt without streaming: connect, first byte and body; "
        "past it the attempt is a timeout, retried or passed to the next step (a step may override).",
    )
    first_token_timeout_s = models.FloatField(
        "first-token timeout (s)",
        default=15.0,
        validators=[MinValueValidator(0.1), MaxValueValidator(600)],
        help_text="Streams: longest wait for the first token, connect included, before retrying or "
        "falling back (a step may override).",
    )
    idle_timeout_s = models.FloatField(
        "idle timeout (s)",
        default=30.0,
        validators=[MinValueValidator(0.1), MaxValueValidator(600)],
        help_text="Streams: longest wait for the next event after the first token; past it the "
        "stream ends with an error, as a stream cut does (a step may override).",
    )
    max_retry_after_s = models.FloatField(
        "Retry-After cap (s)",
        default=30.0,
        validators=[MinValueValidator(0), MaxValueValidator(600)],
        help_text="Longest Retry-After the chain will wait when no step is left.",
    )
    deadline_s = models.FloatField(
        "overall deadline (s)",
        default=60.0,
        validators=[MinValueValidator(0.5), MaxValueValidator(3600)],
        help_text="Hard bound on one request, every retry and fallback included.",
    )
    max_attempts = models.PositiveSmallIntegerField(
        default=6,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="Hard cap on upstream calls for one request.",
    )
    content_filter_policy = models.CharField(
        max_length=16, choices=ContentFilterPolicy.choices, default=ContentFilterPolicy.STOP
    )
    strategy = models.CharField(
        "order of steps",
        max_length=24,
        choices=ChainStrategy.choices,
        default=ChainStrategy.ORDERED,
        db_default=ChainStrategy.ORDERED,
        help_text="Per request, before the first call. Steps with no figure (no price, no recent "
        "calls) keep their places; ties keep the configured order.",
    )
    daily_budget_usd = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal(0))]
    )
    monthly_budget_usd = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal(0))]
    )
    validate_schema = models.BooleanField(
        "validate JSON schema answers",
        default=True,
        help_text="A json_schema answer that breaks its schema is a bad response (retried, then the "
        "next step). Turn off to pass such answers through.",
    )
    cache_ttl_s = models.PositiveIntegerField(
        "cache TTL (s)", null=True, blank=True, help_text="Blank: responses are not cached."
    )
    body_logging = models.CharField(
        "keep request bodies",
        max_length=16,
        choices=BodyLogging.choices,
        default=BodyLogging.OFF,
        db_default=BodyLogging.OFF,
        help_text="Kept bodies show on the completion page and in the request log's prompt search, "
        "with provider keys masked; they are deleted after RANA_BODY_RETENTION_DAYS.",
    )
    body_log_chars = models.PositiveIntegerField(
        "characters kept",
        default=2000,
        db_default=2000,
        validators=[MinValueValidator(1), MaxValueValidator(1_000_000)],
        help_text='With "the first N characters": N, per message and for the answer.',
    )
    # The circuit breaker for this chain's requests (blank: the RANA_BREAKER_* setting).
    breaker_enabled = models.BooleanField(
        "circuit breaker",
        default=True,
        help_text="Off: this chain's requests never skip a step whose circuit is open (their "
        "outcomes still count for other chains).",
    )
    breaker_threshold = models.PositiveSmallIntegerField(
        "opens after (consecutive failures)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Blank: RANA_BREAKER_THRESHOLD.",
    )
    breaker_failure_rate_pct = models.PositiveSmallIntegerField(
        "or at a failure rate of (%)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Blank: RANA_BREAKER_FAILURE_RATE_PCT.",
    )
    breaker_window_s = models.FloatField(
        "over a window of (s)",
        null=True,
        blank=True,
        validators=[MinValueValidator(2), MaxValueValidator(600)],
        help_text="Blank: RANA_BREAKER_WINDOW_S.",
    )
    breaker_min_calls = models.PositiveIntegerField(
        "once the window holds (calls)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(1_000_000)],
        help_text="Blank: RANA_BREAKER_MIN_CALLS.",
    )
    breaker_cooldown_s = models.FloatField(
        "cooldown (s)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1), MaxValueValidator(3600)],
        help_text="Blank: RANA_BREAKER_COOLDOWN_S. Doubled on each failed probe.",
    )
    breaker_cooldown_cap_s = models.FloatField(
        "cooldown cap (s)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1), MaxValueValidator(86400)],
        help_text="Blank: RANA_BREAKER_COOLDOWN_CAP_S.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="fallbackchain_single_default",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValidationError({"backoff_cap_s": "The backoff cap must be at least the base."})
        cap, cooldown = self.breaker_cooldown_cap_s, self.breaker_cooldown_s
        if cap is not None and cooldown is not None and cap < cooldown:
            raise ValidationError(
                {"breaker_cooldown_cap_s": "The cooldown cap must be at least the cooldown."}
            )


# The fields an operator configures on a chain (admin form, configuration as code).
CHAIN_CONFIG_FIELDS = (
    "name",
    "slug",
    "description",
    "is_default",
    "default_retries",
    "backoff_base_s",
    "backoff_cap_s",
    "connect_timeout_s",
    "step_timeout_s",
    "first_token_timeout_s",
    "idle_timeout_s",
    "max_retry_after_s",
    "deadline_s",
    "max_attempts",
    "content_filter_policy",
    "strategy",
    "validate_schema",
    "daily_budget_usd",
    "monthly_budget_usd",
    "cache_ttl_s",
    "body_logging",
    "body_log_chars",
    "breaker_enabled",
    "breaker_threshold",
    "breaker_failure_rate_pct",
    "breaker_window_s",
    "breaker_min_calls",
    "breaker_cooldown_s",
    "breaker_cooldown_cap_s",
)

# The fields an operator configures on a step, besides its provider (admin inline, config as code).
STEP_CONFIG_FIELDS = (
    "model",
    "enabled",
    "retries",
    "timeout_s",
    "first_token_timeout_s",
    "idle_timeout_s",
    "delay_s",
    "weight",
)


def step_is_usable(*, enabled: bool, provider: Provider | None) -> bool:
    """The one rule of which steps a chain will try: enabled, with an enabled provider."""
    return enabled and provider is not None and provider.enabled


class ChainStep(models.Model):
    chain = models.ForeignKey(FallbackChain, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField(default=0, db_index=True)
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="steps")
    model = models.CharField(max_length=200)
    enabled = models.BooleanField(default=True)
    retries = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(10)], help_text="Blank: the chain's."
    )
    timeout_s = models.FloatField(
        "timeout (s)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1), MaxValueValidator(600)],
        help_text="Blank: the chain's.",
    )
    first_token_timeout_s = models.FloatField(
        "first-token timeout (s)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1), MaxValueValidator(600)],
        help_text="Streams. Blank: the chain's.",
    )
    idle_timeout_s = models.FloatField(
        "idle timeout (s)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1), MaxValueValidator(600)],
        help_text="Streams. Blank: the chain's.",
    )
    delay_s = models.FloatField(
        "backoff base (s)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(60)],
        help_text="Blank: the chain's.",
    )
    weight = models.PositiveSmallIntegerField(
        default=1,
        db_default=1,
        validators=[MaxValueValidator(1000)],
        help_text="Weighted chains: this step is tried first for weight / total of the requests "
        "(0: never first, still a fallback).",
    )

    class Meta:
        ordering = ["chain", "position", "id"]

    def __str__(self) -> str:
        return f"{self.position + 1}. {self.provider} / {self.model}"

    @property
    def is_usable(self) -> bool:
        return step_is_usable(enabled=self.enabled, provider=self.provider)

    def clean(self) -> None:
        super().clean()
        if not (self.model or "").strip():
            raise ValidationError({"model": "A step needs a model name."})
        self.model = self.model.strip()
        if self.enabled and self.provider_id and not self.provider.enabled:
            raise ValidationError(
                {"provider": f"Provider “{self.provider}” is disabled: enable it or disable this step."}
            )
