"""What each model can do: the capability table beside the price table.

Shipped as dated data (providers/data/capabilities.yaml, loaded by rana_load_capabilities)
and editable in the admin. A row the operator saved in the admin is theirs: reloading the
bundled table never overwrites it. A model with no row is assumed to support whatever its
protocol can carry (right for unknown models of an OpenAI-compatible server, which is what
people run locally); add a row to say otherwise.
"""

from __future__ import annotations

from django.db import models

from .provider import ProviderKind

# The boolean columns, in the order the engine names them (engine.types.CAPABILITIES).
CAPABILITY_FIELDS = ("tools", "parallel_tools", "images", "json_object", "json_schema", "reasoning")


class CapabilitySource(models.TextChoices):
    BUNDLED = "bundled", "Bundled table"
    OPERATOR = "operator", "Edited by an operator"


class ModelCapability(models.Model):
    provider_kind = models.CharField(max_length=32, choices=ProviderKind.choices)
    model = models.CharField(
        max_length=200,
        help_text="Exact model id; also matches dated snapshots (gpt-4o matches gpt-4o-2024-08-06).",
    )
    tools = models.BooleanField("tool calling", default=True)
    parallel_tools = models.BooleanField("parallel tool calls", default=True)
    images = models.BooleanField("image input", default=False)
    json_object = models.BooleanField("JSON mode", default=True)
    json_schema = models.BooleanField("JSON schema output", default=False)
    reasoning = models.BooleanField("reasoning / thinking", default=False)
    context_window = models.PositiveIntegerField(null=True, blank=True)
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    as_of = models.DateField(help_text="The date these facts were checked against the provider's docs.")
    source = models.CharField(
        max_length=16, choices=CapabilitySource.choices, default=CapabilitySource.OPERATOR
    )
    notes = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["provider_kind", "model"]
        verbose_name_plural = "model capabilities"
        constraints = [
            models.UniqueConstraint(
                fields=["provider_kind", "model"], name="modelcapability_unique_kind_model"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider_kind}/{self.model}"

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset(name for name in CAPABILITY_FIELDS if getattr(self, name))
