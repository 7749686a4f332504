"""Model prices: USD per million tokens, dated, per provider kind and model."""

from __future__ import annotations

from django.db import models

from .provider import ProviderKind


class ModelPrice(models.Model):
    provider_kind = models.CharField(max_length=32, choices=ProviderKind.choices)
    model = models.CharField(max_length=200)
    input_per_mtok = models.DecimalField("input $/Mtok", max_digits=12, decimal_places=6)
    output_per_mtok = models.DecimalField("output $/Mtok", max_digits=12, decimal_places=6)
    cached_input_per_mtok = models.DecimalField(
        "cached input $/Mtok",
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Blank: cached input tokens are billed at the input price.",
    )
    context_window = models.PositiveIntegerField(null=True, blank=True)
    effective_from = models.DateField(help_text="The date this price took effect.")

    class Meta:
        ordering = ["provider_kind", "model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider_kind", "model", "effective_from"],
                name="modelprice_unique_kind_model_date",
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider_kind}/{self.model} from {self.effective_from}"
