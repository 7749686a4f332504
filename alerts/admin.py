"""Alert rules are edited here; events and deliveries are read here (and on /alerts/)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from alerts.models import AlertDelivery, AlertEvent, AlertRule
from alerts.services import rule_secret_set


class AlertRuleForm(forms.ModelForm):
    webhook_secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Signs every webhook (HMAC-SHA256); stored encrypted, never shown again. Blank: keep the "
        "current one (a new rule with webhooks gets a random one, shown once after saving).",
    )

    class Meta:
        model = AlertRule
        fields = (
            "name", "kind", "enabled", "provider", "chain", "budget_owner", "gateway_key", "threshold_pct",
            "window_s", "min_requests", "webhook_urls", "emails",
        )  # fmt: skip


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    form = AlertRuleForm
    list_display = ("name", "kind", "enabled", "threshold_pct", "window_s", "min_requests", "has_secret")
    list_filter = ("kind", "enabled")
    fields = (
        "name", "kind", "enabled", "provider", "chain", "budget_owner", "gateway_key", "threshold_pct",
        "window_s", "min_requests", "webhook_urls", "webhook_secret", "emails",
    )  # fmt: skip

    @admin.display(boolean=True, description="webhook secret")
    def has_secret(self, rule: AlertRule) -> bool:
        return bool(rule.webhook_secret_encrypted)

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        typed = form.cleaned_data.get("webhook_secret", "")
        if typed:
            rule_secret_set(rule=obj, secret=typed)
        elif obj.webhook_url_list and not obj.webhook_secret_encrypted:
            secret = rule_secret_set(rule=obj)
            messages.warning(request, f"Webhook secret for {obj.name} (shown only now): {secret}")


class AlertDeliveryInline(admin.TabularInline):
    model = AlertDelivery
    extra = 0
    can_delete = False
    readonly_fields = ("channel", "target", "status", "attempts", "sent_at")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AlertEvent)
class AlertEventAdmin(admin.ModelAdmin):
    list_display = ("fired_at", "rule", "summary", "resolved_at")
    list_filter = ("rule",)
    readonly_fields = ("rule", "condition", "summary", "details", "window_start", "fired_at", "resolved_at")
    inlines = [AlertDeliveryInline]

    def has_add_permission(self, request) -> bool:
        return False
