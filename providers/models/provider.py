"""A provider: one upstream account (kind + base URL + encrypted key)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from providers import secrets
from providers.url_safety import UnsafeUpstreamURL, check_upstream_url


class ProviderKind(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible (Ollama, vLLM, ...)"
    ANTHROPIC = "anthropic", "Anthropic"
    GEMINI = "gemini", "Google Gemini"
    SIMULATED = "simulated", "Simulated (offline demo)"


DEFAULT_BASE_URLS = {
    ProviderKind.OPENAI: "https://api.openai.com/v1",
    ProviderKind.OPENAI_COMPATIBLE: "http://127.0.0.1:11434/v1",
    ProviderKind.ANTHROPIC: "https://api.anthropic.com",
    ProviderKind.GEMINI: "https://generativelanguage.googleapis.com",
    ProviderKind.SIMULATED: "",
}

KINDS_NEEDING_KEY = {ProviderKind.OPENAI, ProviderKind.ANTHROPIC, ProviderKind.GEMINI}
PROBE_MIN_INTERVAL_S = 10  # the probe schedule's tick: a shorter interval could not be kept


class Provider(models.Model):
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=32, choices=ProviderKind.choices)
    base_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="Left blank, the kind's public endpoint is used.",
    )
    # Ciphertext only (MultiFernet). Never rendered, logged or exported.
    api_key_ciphertext = models.TextField(blank=True, default="", editable=False)
    api_key_last4 = models.CharField(max_length=4, blank=True, default="", editable=False)
    # "env:NAME" when the key came from an environment variable through rana_config.
    api_key_source = models.CharField(max_length=200, blank=True, default="", editable=False)
    enabled = models.BooleanField(default=True)
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text="Kind-specific options, e.g. for simulated: latency_ms, failure_rate, "
        "failure_kinds, down, hang.",
    )
    # Health probes (providers.services.probes): a one-token request every probe_interval_s.
    probe_enabled = models.BooleanField(
        "health probes", default=False, help_text="Send this provider a one-token request on a schedule."
    )
    probe_interval_s = models.PositiveIntegerField(
        "probe interval (s)",
        default=60,
        validators=[MinValueValidator(PROBE_MIN_INTERVAL_S)],
        help_text=f"Seconds between probes (at least {PROBE_MIN_INTERVAL_S}).",
    )
    probe_model = models.CharField(
        max_length=200,
        blank=True,
        help_text="The model probed. Left blank: the model of this provider's first chain step.",
    )
    # When the last probe was claimed: the compare-and-set that keeps two beats from probing twice.
    last_probe_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    # --- key handling -----------------------------------------------------
    def set_api_key(self, plaintext: str, *, source: str = "") -> None:
        plaintext = plaintext.strip()
        self.api_key_ciphertext = secrets.encrypt(plaintext) if plaintext else ""
        self.api_key_last4 = plaintext[-4:] if len(plaintext) > 8 else ""
        self.api_key_source = source

    def get_api_key(self) -> str:
        return secrets.decrypt(self.api_key_ciphertext) if self.api_key_ciphertext else ""

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key_ciphertext)

    @property
    def api_key_mask(self) -> str:
        if not self.api_key_ciphertext:
            return "—"
        return "••••" + self.api_key_last4 if self.api_key_last4 else "••••"

    # --- URL ----------------------------------------------------------------
    @property
    def effective_base_url(self) -> str:
        return (self.base_url or DEFAULT_BASE_URLS.get(self.kind, "")).rstrip("/")

    def clean(self) -> None:
        super().clean()
        if self.kind == ProviderKind.SIMULATED:
            return
        url = self.effective_base_url
        try:
            check_upstream_url(url, allowed_hosts=settings.RANA_ALLOWED_UPSTREAM_HOSTS)
        except UnsafeUpstreamURL as exc:
            raise ValidationError({"base_url": str(exc)}) from exc
        if not isinstance(self.options, dict):
            raise ValidationError({"options": "Options must be a JSON object."})


# What an operator sets on a provider (the admin form and config as code): not its key, which
# is entered on its own and never exported.
PROVIDER_CONFIG_FIELDS = (
    "name",
    "kind",
    "base_url",
    "enabled",
    "options",
    "probe_enabled",
    "probe_interval_s",
    "probe_model",
)
