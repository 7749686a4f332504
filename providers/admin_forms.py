"""Admin forms: the write-only provider key, the chain step rules and a chain's what-if."""

from __future__ import annotations

from typing import Any

from adminsortable2.admin import CustomInlineFormSet
from django import forms
from django.core.exceptions import ValidationError

from providers.models import ChainStep, FallbackChain, Provider, ProviderKind
from providers.models.chain import CHAIN_CONFIG_FIELDS, STEP_CONFIG_FIELDS
from providers.models.provider import KINDS_NEEDING_KEY, PROVIDER_CONFIG_FIELDS
from providers.services.chain_rules import StepDraft, chain_steps_problem


class ProviderAdminForm(forms.ModelForm):
    base_url = forms.URLField(
        label="Base URL",
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text=Provider._meta.get_field("base_url").help_text,
    )
    # Write-only: never rendered back (render_value=False), never put in an error message.
    api_key = forms.CharField(
        label="API key",
        required=False,
        max_length=2000,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: stored encrypted and never shown again. Leave blank to keep the stored key.",
    )
    clear_api_key = forms.BooleanField(
        label="Clear the stored key", required=False, help_text="Remove the stored key from this provider."
    )

    class Meta:
        model = Provider
        fields = list(PROVIDER_CONFIG_FIELDS)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        new_key = cleaned.get("api_key") or ""
        clear = bool(cleaned.get("clear_api_key"))
        if new_key and clear:
            self.add_error("clear_api_key", "Either enter a new key or clear the stored one, not both.")
        kind = cleaned.get("kind")
        keeps_key = bool(new_key) or (self.instance.has_api_key and not clear)
        if kind in KINDS_NEEDING_KEY and not keeps_key:
            self.add_error("api_key", f"{ProviderKind(kind).label} providers need an API key.")
        if "options" in cleaned and not isinstance(cleaned["options"], dict):
            self.add_error("options", 'Options must be a JSON object, e.g. {"latency_ms": 150}.')
        return cleaned

    def save(self, commit: bool = True) -> Provider:
        provider = super().save(commit=False)
        new_key = self.cleaned_data.get("api_key") or ""
        if new_key:
            provider.set_api_key(new_key)
        elif self.cleaned_data.get("clear_api_key"):
            provider.set_api_key("")
        if commit:
            provider.save()
        return provider


class FallbackChainAdminForm(forms.ModelForm):
    class Meta:
        model = FallbackChain
        fields = list(CHAIN_CONFIG_FIELDS)
        help_texts = {
            "is_default": "Requests that name no chain use this one; ticking it unticks the old default."
        }

    def _get_validation_exclusions(self) -> set[str]:
        exclusions = super()._get_validation_exclusions()
        if self.cleaned_data.get("is_default"):
            exclusions.add("is_default")  # the admin moves the default on save (chain_default_claim)
        return exclusions


class ChainStepForm(forms.ModelForm):
    class Meta:
        model = ChainStep
        fields = ["provider", *STEP_CONFIG_FIELDS]
        error_messages = {
            "model": {"required": "A step needs a model name."},
            "provider": {"required": "Choose a provider for this step."},
        }


class ChainStepFormSet(CustomInlineFormSet):
    """adminsortable2's formset (drag-and-drop positions) plus the chain-level rules."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return  # row errors first: they say more than the chain-level rule
        drafts = [
            StepDraft(
                provider=form.cleaned_data.get("provider"), enabled=bool(form.cleaned_data.get("enabled"))
            )
            for form in self.forms
            if getattr(form, "cleaned_data", None) and not self._should_delete_form(form)
        ]
        problem = chain_steps_problem(steps=drafts)
        if problem:
            raise ValidationError(problem)


class WhatIfForm(forms.Form):
    """A chain's what-if: providers to treat as down, and the request the costs are for."""

    down = forms.TypedMultipleChoiceField(
        label="Treat as down",
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Their steps are skipped without a call, as when their circuit is open.",
    )
    prompt_tokens = forms.IntegerField(label="Prompt tokens", min_value=0, max_value=10_000_000)
    output_tokens = forms.IntegerField(label="Output tokens", min_value=0, max_value=10_000_000)

    def __init__(self, *args: Any, providers: list[Provider], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["down"].choices = [(p.pk, p.name) for p in providers]
