"""Playground forms: a prompt with its parameters, injected faults, and a two-chain compare.

Parameters are checked twice over: by Django fields (range and type, with the field's own
error) and by the providers service's own normalisers, whose InvalidRequest names the field,
so what the form accepts is exactly what the service accepts.
"""

from __future__ import annotations

from typing import Any

from django import forms

from providers.models import FallbackChain
from providers.selectors import chain_list
from providers.services import FAULT_CHOICES, STREAM_CUT, FaultSpec, params_normalise
from providers.types import InvalidRequest

PARAM_FIELDS = ("temperature", "max_tokens", "top_p", "stop")


def chain_choices() -> list[tuple[str, str]]:
    return [(c.slug, f"{c.name} (default)" if c.is_default else c.name) for c in chain_list()]


def default_chain_slug() -> str | None:
    chain = FallbackChain.objects.filter(is_default=True).only("slug").first()
    return chain.slug if chain else None


def _stop_list(value: str) -> list[str]:
    return [line for line in value.replace("\r\n", "\n").split("\n") if line]


class ParamsMixin(forms.Form):
    system = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), label="System prompt")
    message = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Ask something…"}), label="Message"
    )
    temperature = forms.FloatField(required=False, min_value=0, max_value=2)
    max_tokens = forms.IntegerField(required=False, min_value=1, max_value=1_000_000, label="Max tokens")
    top_p = forms.FloatField(required=False, min_value=0, max_value=1, label="Top p")
    stop = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="One stop sequence per line, at most 4.",
    )
    stream = forms.BooleanField(required=False, initial=True, label="Stream tokens")

    def params(self) -> dict[str, Any]:
        """The parameters to send, as plain JSON (only those given)."""
        data = self.cleaned_data
        params = {
            name: data[name] for name in ("temperature", "max_tokens", "top_p") if data.get(name) is not None
        }
        stops = _stop_list(data.get("stop") or "")
        if stops:
            params["stop"] = stops
        return params

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not any(name in self.errors for name in PARAM_FIELDS):
            try:
                params_normalise(self.params())
            except InvalidRequest as exc:
                self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return cleaned


class PromptForm(ParamsMixin):
    chain = forms.ChoiceField(label="Chain")
    parent = forms.UUIDField(required=False, widget=forms.HiddenInput)

    field_order = ["chain", "system", "message", "temperature", "max_tokens", "top_p", "stop", "stream"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["chain"].choices = chain_choices()
        if not self.is_bound and "chain" not in self.initial:
            self.initial["chain"] = default_chain_slug()


class CompareForm(ParamsMixin):
    chain = forms.ChoiceField(label="Chain A")
    chain_b = forms.ChoiceField(label="Chain B")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = chain_choices()
        self.fields["chain"].choices = choices
        self.fields["chain_b"].choices = choices
        if not self.is_bound:
            self.initial.setdefault("chain", default_chain_slug())
            other = next((slug for slug, _ in choices if slug != self.initial["chain"]), None)
            self.initial.setdefault("chain_b", other)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("chain") and cleaned.get("chain") == cleaned.get("chain_b"):
            self.add_error("chain_b", "Pick a different chain to compare with.")
        return cleaned


class FaultForm(forms.Form):
    """One injected fault. A row with no fault chosen is ignored."""

    failure = forms.ChoiceField(choices=[("", "no fault"), *FAULT_CHOICES], required=False, label="Fault")
    step = forms.TypedChoiceField(coerce=int, required=False, label="Step")
    retry_after_s = forms.FloatField(
        required=False, min_value=0, max_value=600, label="Retry-After (s)", initial=1
    )
    cut_after_tokens = forms.IntegerField(
        required=False, min_value=0, max_value=10_000, label="Cut after", initial=3
    )
    times = forms.IntegerField(
        required=False, min_value=1, max_value=50, label="Times", help_text="Blank: every call."
    )

    def __init__(self, *args: Any, steps: list[tuple[int, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["step"].choices = [(pos, label) for pos, label in steps or []]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("failure") and cleaned.get("step") in (None, ""):
            self.add_error("step", "Pick the step to fail.")
        return cleaned

    def spec(self) -> FaultSpec | None:
        data = self.cleaned_data
        if not data.get("failure"):
            return None
        cut = data.get("cut_after_tokens")
        return FaultSpec(
            step=data["step"],
            failure=data["failure"],
            retry_after_s=data.get("retry_after_s") if data["failure"] == "rate_limited" else None,
            cut_after_tokens=(cut or 0) if data["failure"] == STREAM_CUT else 0,
            times=data.get("times"),
        )


FaultFormSet = forms.formset_factory(FaultForm, extra=2, max_num=4)


def fault_formset(
    data: Any = None, *, steps: list[tuple[int, str]], initial: list[dict] | None = None
) -> forms.BaseFormSet:
    return FaultFormSet(data, prefix="fault", initial=initial, form_kwargs={"steps": steps})


def fault_specs(formset: forms.BaseFormSet) -> list[FaultSpec]:
    return [spec for form in formset.forms if (spec := form.spec()) is not None]
