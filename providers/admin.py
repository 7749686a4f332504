"""The admin: providers (write-only keys), prices, capabilities, chains (drag-and-drop steps,
what-if); the ledger's read-only pages are in admin_ledger.py."""

from __future__ import annotations

from typing import Any

from adminsortable2.admin import SortableAdminBase, SortableTabularInline
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from providers.admin_forms import (
    ChainStepForm,
    ChainStepFormSet,
    FallbackChainAdminForm,
    ProviderAdminForm,
    WhatIfForm,
)
from providers.models import (
    CapabilitySource,
    ChainStep,
    FallbackChain,
    ModelCapability,
    ModelPrice,
    Provider,
)
from providers.models.chain import STEP_CONFIG_FIELDS
from providers.selectors import chain_usable_steps, chains_without_usable_step
from providers.services.chain_rules import chain_default_claim, chain_steps_renumber
from providers.services.plans import chain_what_if, chain_worst_case, what_if_usage
from providers.services.probes import probe_report_words, provider_test_connection
from providers.services.routing import usd

admin.site.site_header = "RANA administration"
admin.site.site_title = "RANA admin"
admin.site.index_title = "Providers, chains and the ledger"


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderAdminForm
    list_display = [
        "name",
        "kind",
        "effective_base_url",
        "enabled",
        "api_key_mask",
        "key_source",
        "probe_enabled",
        "updated_at",
    ]
    list_filter = ["kind", "enabled", "probe_enabled"]
    search_fields = ["name"]
    readonly_fields = ["api_key_mask", "key_source", "last_probe_at", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "base_url", "enabled"]}),
        ("API key", {"fields": ["api_key", "clear_api_key", "api_key_mask", "key_source"]}),
        ("Options", {"fields": ["options"]}),
        ("Health probes", {"fields": ["probe_enabled", "probe_interval_s", "probe_model", "last_probe_at"]}),
        ("History", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    def save_model(self, request: HttpRequest, obj: Provider, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if obj.enabled or "enabled" not in form.changed_data:
            return
        names = chains_without_usable_step(provider_id=obj.pk)
        if names:
            listed = ", ".join(f"“{name}”" for name in names)
            self.message_user(
                request,
                f"With “{obj.name}” disabled, these chains have no usable step and every request to "
                f"them fails at once: {listed}. Enable a step of another provider, or this provider again.",
                messages.WARNING,
            )

    actions = ["test_connection"]
    change_form_template = "admin/providers/provider/change_form.html"

    def get_urls(self) -> list:
        test = self.admin_site.admin_view(require_POST(self.test_connection_view))
        own = [path("<path:object_id>/test-connection/", test, name="providers_provider_test_connection")]
        return own + super().get_urls()

    def _test_one(self, request: HttpRequest, provider: Provider) -> None:
        """One tiny request to the provider (max_tokens 1), its outcome told in words."""
        try:
            worked, words = probe_report_words(
                provider_test_connection(provider=provider), provider_name=provider.name
            )
        except Exception as exc:  # the message is the answer: never a 500 for a provider's fault
            worked, words = False, f"Could not test “{provider.name}”: {type(exc).__name__}: {exc}"
        self.message_user(request, words, messages.SUCCESS if worked else messages.ERROR)

    @admin.action(description="Test connection (one request, max_tokens 1)", permissions=["change"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        for provider in queryset:
            self._test_one(request, provider)

    def test_connection_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        provider = self.get_object(request, object_id)
        if provider is None:
            raise Http404("No such provider.")
        if not self.has_change_permission(request, provider):
            raise PermissionDenied
        self._test_one(request, provider)
        return HttpResponseRedirect(reverse("admin:providers_provider_change", args=[provider.pk]))

    @admin.display(description="base URL")
    def effective_base_url(self, obj: Provider) -> str:
        return obj.effective_base_url or "—"

    @admin.display(description="stored key")
    def api_key_mask(self, obj: Provider) -> str:
        return obj.api_key_mask

    @admin.display(description="key source")
    def key_source(self, obj: Provider) -> str:
        return obj.api_key_source or ("admin" if obj.has_api_key else "—")


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = [
        "provider_kind",
        "model",
        "effective_from",
        "input_per_mtok",
        "output_per_mtok",
        "cached_input_per_mtok",
        "context_window",
    ]
    list_filter = ["provider_kind", "effective_from"]
    search_fields = ["model"]
    date_hierarchy = "effective_from"


@admin.register(ModelCapability)
class ModelCapabilityAdmin(admin.ModelAdmin):
    """What each model can do. Saving a row here makes it the operator's: reloading the bundled
    table (rana_load_capabilities) never overwrites it."""

    list_display = [
        "provider_kind",
        "model",
        "tools",
        "parallel_tools",
        "images",
        "json_object",
        "json_schema",
        "reasoning",
        "context_window",
        "max_output_tokens",
        "as_of",
        "source",
    ]
    list_filter = ["provider_kind", "source", "images", "json_schema", "reasoning"]
    search_fields = ["model"]
    readonly_fields = ["source"]

    def save_model(self, request: HttpRequest, obj: ModelCapability, form: Any, change: bool) -> None:
        obj.source = CapabilitySource.OPERATOR
        super().save_model(request, obj, form, change)


class ChainStepInline(SortableTabularInline):
    model = ChainStep
    form = ChainStepForm
    formset = ChainStepFormSet
    ordering = ["position", "id"]  # adminsortable2 takes its sort field from ordering[0]
    fields = ["provider", *STEP_CONFIG_FIELDS]

    def get_extra(self, request: HttpRequest, obj: FallbackChain | None = None, **kwargs: Any) -> int:
        return 3 if obj is None else 1

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "provider":  # providers are edited on their own page, not from a step row
            field.widget.can_change_related = field.widget.can_delete_related = False
        return field


@admin.register(FallbackChain)
class FallbackChainAdmin(SortableAdminBase, admin.ModelAdmin):
    form = FallbackChainAdminForm
    inlines = [ChainStepInline]
    list_display = ["name", "slug", "is_default", "step_count", "max_attempts", "deadline_s", "updated_at"]
    list_filter = ["is_default", "content_filter_policy"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["worst_case"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "description", "is_default", "worst_case"]}),
        ("Order of steps", {"fields": ["strategy"]}),
        (
            "Retries and time limits",
            {
                "fields": [
                    "default_retries",
                    ("backoff_base_s", "backoff_cap_s"),
                    ("connect_timeout_s", "step_timeout_s"),
                    ("first_token_timeout_s", "idle_timeout_s"),
                    "max_retry_after_s",
                    ("deadline_s", "max_attempts"),
                ]
            },
        ),
        (
            "Policy, budget and cache",
            {
                "fields": [
                    "content_filter_policy",
                    "validate_schema",
                    ("daily_budget_usd", "monthly_budget_usd"),
                    "cache_ttl_s",
                ]
            },
        ),
        (
            "Request bodies",
            {
                "description": "Off by default. Kept bodies are masked for provider keys and deleted "
                "after RANA_BODY_RETENTION_DAYS; traces carry them too when tracing is on.",
                "fields": [("body_logging", "body_log_chars")],
            },
        ),
        (
            "Circuit breaker",
            {
                "description": "Blank fields take the RANA_BREAKER_* settings. Circuits are per "
                "provider and model, shared by every chain; these numbers decide for this chain's requests.",
                "fields": [
                    "breaker_enabled",
                    ("breaker_threshold", "breaker_failure_rate_pct"),
                    ("breaker_window_s", "breaker_min_calls"),
                    ("breaker_cooldown_s", "breaker_cooldown_cap_s"),
                ],
            },
        ),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[FallbackChain]:
        return super().get_queryset(request).annotate(_step_count=Count("steps"))

    @admin.display(description="steps", ordering="_step_count")
    def step_count(self, obj: FallbackChain) -> int:
        return obj._step_count

    @admin.display(description="What this configuration implies")
    def worst_case(self, obj: FallbackChain | None) -> str:
        if obj is None or obj.pk is None:
            return "Save the chain to see its worst case."
        case = chain_worst_case(chain=obj)
        if not case.upstream_calls:
            return "No usable step: every request to this chain fails at once."
        return (
            f"Worst case per request: {case.upstream_calls} upstream calls, and up to "
            f"{case.seconds:.1f} s before the caller gets an answer "
            f"(every attempt timing out at its step timeout, with backoff). A stream: up to "
            f"{case.first_token_s:.1f} s before its first token (every attempt timing out at its "
            f"first-token timeout), then at most {case.idle_s:.1f} s of silence between events "
            f"before it is cut. The overall deadline is {obj.deadline_s:g} s."
        )

    def get_urls(self) -> list:
        what_if = path(
            "<path:object_id>/what-if/",
            self.admin_site.admin_view(self.what_if_view),
            name="providers_fallbackchain_what_if",
        )
        return [what_if, *super().get_urls()]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        chain = self.get_object(request, object_id)
        if chain is not None:
            usage = what_if_usage()
            initial = {"prompt_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
            extra_context = {
                **(extra_context or {}),
                "what_if_form": WhatIfForm(initial=initial, providers=_chain_providers(chain)),
                "what_if_url": reverse("admin:providers_fallbackchain_what_if", args=[chain.pk]),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def what_if_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The order of attempts, worst-case time and cost with the chosen providers down."""
        chain = self.get_object(request, object_id)
        if chain is None:
            raise Http404("No such chain.")
        if not self.has_view_or_change_permission(request, chain):
            raise PermissionDenied
        usage = what_if_usage()
        data = request.GET.copy()
        data.setdefault("prompt_tokens", str(usage.input_tokens))
        data.setdefault("output_tokens", str(usage.output_tokens))
        form = WhatIfForm(data, providers=_chain_providers(chain))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": chain,
            "title": f"What if: {chain}",
            "form": form,
        }
        if form.is_valid():
            found = chain_what_if(
                chain=chain,
                down=set(form.cleaned_data["down"]),
                usage=what_if_usage(
                    prompt_tokens=form.cleaned_data["prompt_tokens"],
                    output_tokens=form.cleaned_data["output_tokens"],
                ),
            )
            context.update(what_if=found, case=found.case, cost=usd(found.case.cost_usd))
        return TemplateResponse(request, "admin/providers/fallbackchain/what_if.html", context)

    def save_model(self, request: HttpRequest, obj: FallbackChain, form: Any, change: bool) -> None:
        if obj.is_default:
            for name in chain_default_claim(chain=obj):
                self.message_user(request, f"“{name}” is no longer the default chain.", messages.INFO)
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        chain_steps_renumber(chain=form.instance)


def _chain_providers(chain: FallbackChain) -> list[Provider]:
    """The providers of the chain's usable steps, each once, in step order."""
    steps = chain_usable_steps(chain_ids=[chain.pk]).get(chain.pk, [])
    return list({step.provider_id: step.provider for step in steps}.values())


# The ledger's read-only pages (registered on import). Last: it reads providers.selectors,
# which must come after providers.services, as the imports above load them.
from providers import admin_ledger  # noqa: E402, F401
