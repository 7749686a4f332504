"""Playground forms: a prompt with its parameters, tools, response format and an image,
injected faults, tool results typed by hand, and a two-chain compare.

Parameters are checked twice over: by Django fields (range and type, with the field's own
error) and by the providers service's own normalisers, whose InvalidRequest names the field,
so what the form accepts is exactly what the service accepts. Tools and the response format
are sent as OpenAI-shaped params; JSON that does not parse, or a schema that is not a JSON
Schema, is an error on its field.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from django import forms
from django.conf import settings
from jsonschema import validators
from jsonschema.exceptions import SchemaError

from providers.models import FallbackChain
from providers.selectors import chain_list
from providers.services import (
    FAULT_CHOICES,
    IMAGE_MEDIA_TYPES,
    STREAM_CUT,
    FaultSpec,
    params_normalise,
    sniff_media_type,
)
from providers.types import InvalidRequest

PARAM_FIELDS = ("temperature", "max_tokens", "top_p", "stop")
CAPABILITY_FIELDS = ("tools", "tool_choice", "response_format", "schema")

TOOLS_EXAMPLE = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name, e.g. Paris"}},
                "required": ["city"],
            },
        },
    }
]
SCHEMA_EXAMPLE = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temperature_c": {"type": "number"}},
    "required": ["city", "temperature_c"],
    "additionalProperties": False,
}
SCHEMA_NAME = "answer"


def example_json(value: Any) -> str:
    return json.dumps(value, indent=2)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if hasattr(exc, "lineno") else ""
        raise forms.ValidationError(f"This is not valid JSON{where}: {getattr(exc, 'msg', exc)}.") from None


def _schema_error(schema: Any, where: str) -> str | None:
    """Why `schema` is not a JSON Schema the answer can be checked against, or None."""
    if not isinstance(schema, dict):
        return f"{where} must be a JSON object."
    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        path = "/".join(str(p) for p in exc.absolute_path)
        return f"{where} is not a valid JSON Schema{f' at /{path}' if path else ''}: {exc.message}."
    return None


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
        if not any(name in self.errors for name in (*PARAM_FIELDS, *CAPABILITY_FIELDS)):
            try:
                params_normalise(self.params())
            except InvalidRequest as exc:
                field = self.error_field(exc.field)
                words = exc.message if field == exc.field else f"{exc.field}: {exc.message}"
                self.add_error(field, words)
        return cleaned

    def error_field(self, field: str) -> str | None:
        """The form field an InvalidRequest's field names (None: the whole form)."""
        return field if field in self.fields else None


def _code(rows: int, placeholder: str = "") -> forms.Textarea:
    attrs = {"rows": rows, "spellcheck": "false", "class": "pg-code", "autocomplete": "off"}
    return forms.Textarea(attrs={**attrs, "placeholder": placeholder} if placeholder else attrs)


class PromptForm(ParamsMixin):
    chain = forms.ChoiceField(label="Chain")
    parent = forms.UUIDField(required=False, widget=forms.HiddenInput)
    image = forms.FileField(
        required=False,
        label="Attach an image",
        widget=forms.FileInput(attrs={"accept": ",".join(IMAGE_MEDIA_TYPES)}),
    )
    tools = forms.CharField(
        required=False,
        widget=_code(6, '[{"type": "function", "function": {"name": ..., "parameters": {...}}}]'),
        label="Tools (JSON)",
        help_text="A list of OpenAI function tools. Leave empty for none.",
    )
    tool_choice = forms.ChoiceField(
        required=False,
        choices=[("auto", "auto"), ("none", "none"), ("required", "required")],
        initial="auto",
        label="Tool choice",
    )
    response_format = forms.ChoiceField(
        required=False,
        choices=[("text", "Text"), ("json_object", "JSON object"), ("json_schema", "JSON schema")],
        initial="text",
        label="Response format",
    )
    schema = forms.CharField(
        required=False,
        widget=_code(6, '{"type": "object", "properties": {...}}'),
        label="JSON schema",
        help_text="The JSON Schema the answer must follow.",
    )

    field_order = [
        "chain",
        "system",
        "message",
        "image",
        "temperature",
        "max_tokens",
        "top_p",
        "stop",
        "stream",
        "tools",
        "tool_choice",
        "response_format",
        "schema",
    ]
    tools_example = example_json(TOOLS_EXAMPLE)
    schema_example = example_json(SCHEMA_EXAMPLE)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["chain"].choices = chain_choices()
        if not self.is_bound and "chain" not in self.initial:
            self.initial["chain"] = default_chain_slug()

    @property
    def image_limit(self) -> int:
        return int(settings.RANA_IMAGE_MAX_BYTES)

    def clean_image(self) -> str | None:
        """The attached image as a data: URL (the hub checks it again when the run is sent)."""
        upload = self.cleaned_data.get("image")
        if not upload:
            return None
        limit = self.image_limit
        if upload.size > limit:
            raise forms.ValidationError(
                f"The image is {upload.size:,} bytes; the limit is {limit:,} bytes (RANA_IMAGE_MAX_BYTES)."
            )
        raw = upload.read()
        media_type = sniff_media_type(raw[:16])
        if media_type is None:
            raise forms.ValidationError("Attach a PNG, JPEG, GIF or WebP image: this file is not one.")
        return f"data:{media_type};base64,{base64.b64encode(raw).decode('ascii')}"

    def clean_tools(self) -> list | None:
        text = (self.cleaned_data.get("tools") or "").strip()
        if not text:
            return None
        value = _parse_json(text)
        try:
            params_normalise({"tools": value})
        except InvalidRequest as exc:
            raise forms.ValidationError(f"{exc.field}: {exc.message}.") from None
        for j, tool in enumerate(value):
            error = _schema_error(tool["function"].get("parameters", {}), f"tools[{j}].function.parameters")
            if error:
                raise forms.ValidationError(error)
        return value or None

    def _response_format(self) -> dict[str, Any] | None:
        """The response_format param from the format picked and its schema (errors on `schema`)."""
        kind = self.cleaned_data.get("response_format") or "text"
        if kind == "json_object":
            return {"type": "json_object"}
        if kind != "json_schema":
            return None
        text = (self.cleaned_data.get("schema") or "").strip()
        if not text:
            self.add_error("schema", "Give the JSON schema the answer must follow (or pick another format).")
            return None
        try:
            value = _parse_json(text)
        except forms.ValidationError as exc:
            self.add_error("schema", exc)
            return None
        # Either the schema itself, or OpenAI's {"name", "schema", "strict"} wrapper around it.
        wrapped = isinstance(value, dict) and isinstance(value.get("schema"), dict) and "name" in value
        spec = dict(value) if wrapped else {"name": SCHEMA_NAME, "schema": value}
        error = _schema_error(spec["schema"], "The schema")
        if error:
            self.add_error("schema", error)
            return None
        return {"type": "json_schema", "json_schema": spec}

    def clean(self) -> dict[str, Any]:
        if "schema" not in self.errors and "response_format" not in self.errors:
            self.cleaned_data["response_format_param"] = self._response_format()
        return super().clean()

    def params(self) -> dict[str, Any]:
        params = super().params()
        data = self.cleaned_data
        if data.get("tools"):
            params["tools"] = data["tools"]
            params["tool_choice"] = data.get("tool_choice") or "auto"
        if data.get("response_format_param"):
            params["response_format"] = data["response_format_param"]
        return params

    def error_field(self, field: str) -> str | None:
        head = field.split("[", 1)[0].split(".", 1)[0]
        if head == "response_format":
            head = "schema" if (self.cleaned_data.get("response_format") == "json_schema") else head
        return head if head in self.fields else super().error_field(field)


class ToolResultsForm(forms.Form):
    """One result per tool call of an answer, typed by hand (sent back as tool messages)."""

    def __init__(self, *args: Any, calls: list[dict[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = calls
        for index, call in enumerate(calls):
            self.fields[f"result_{index}"] = forms.CharField(
                label=f"Result of {call['name']}",
                strip=False,
                widget=_code(3, '{"temperature_c": 18, "sky": "clear"}'),
                error_messages={"required": f"Write what {call['name']} returned (any text or JSON)."},
            )

    def rows(self) -> list[tuple[dict[str, str], forms.BoundField]]:
        return [(call, self[f"result_{i}"]) for i, call in enumerate(self.calls)]

    def results(self) -> list[str]:
        return [self.cleaned_data[f"result_{i}"] for i in range(len(self.calls))]


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
