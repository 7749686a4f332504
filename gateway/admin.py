"""Gateway keys in the admin: a new key is shown once, in a message, and never again."""

from __future__ import annotations

import datetime as dt

from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from gateway.models import GatewayKey
from gateway.services.keys import gateway_key_issue, gateway_key_revoke
from providers.models import Completion

USAGE_DAYS = 30


def _usage(field: str, aggregate):
    since = timezone.now() - dt.timedelta(days=USAGE_DAYS)
    rows = (
        Completion.objects.filter(gateway_key_prefix=OuterRef("prefix"), created_at__gte=since)
        .order_by()
        .values("gateway_key_prefix")
        .annotate(value=aggregate)
        .values("value")
    )
    return Subquery(rows[:1])


@admin.register(GatewayKey)
class GatewayKeyAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "prefix",
        "key_status",
        "chains",
        "rpm_limit",
        "daily_budget_usd",
        "monthly_budget_usd",
        "requests_30d",
        "spend_30d",
        "last_used_at",
        "created_at",
    )
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix")
    filter_horizontal = ("allowed_chains",)
    readonly_fields = ("prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    fields = (
        "name",
        "allowed_chains",
        "rpm_limit",
        "daily_budget_usd",
        "monthly_budget_usd",
        "expires_at",
        *readonly_fields,
    )
    actions = ("revoke_keys",)

    class Media:
        js = ("js/copy.js",)  # the Copy button beside a new key

    def get_queryset(self, request: HttpRequest) -> QuerySet[GatewayKey]:
        return (
            super()
            .get_queryset(request)
            .prefetch_related("allowed_chains")
            .annotate(
                # A sampled budget refusal row stands for `represents` requests.
                requests_30d=Coalesce(_usage("requests", Sum("represents")), 0),
                spend_30d=_usage("spend", Sum("cost_usd")),
            )
        )

    @admin.display(description="status")
    def key_status(self, key: GatewayKey) -> str:
        return key.status

    @admin.display(description="chains")
    def chains(self, key: GatewayKey) -> str:
        return ", ".join(chain.slug for chain in key.allowed_chains.all()) or "all"

    @admin.display(description=f"requests ({USAGE_DAYS} d)", ordering="requests_30d")
    def requests_30d(self, key: GatewayKey) -> int:
        return key.requests_30d

    @admin.display(description=f"spend ({USAGE_DAYS} d, USD)", ordering="spend_30d")
    def spend_30d(self, key: GatewayKey) -> str:
        return f"{key.spend_30d:.4f}" if key.spend_30d else "0"

    def save_model(self, request: HttpRequest, obj: GatewayKey, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        plaintext = gateway_key_issue(obj)
        obj.created_by = request.user
        super().save_model(request, obj, form, change)
        messages.warning(
            request,
            format_html(
                'New key for “{}”: <code id="new-gateway-key">{}</code> '
                '<button type="button" data-copy-target="#new-gateway-key">Copy</button> '
                "— copy it now: RANA stores only its hash and will never show it again.",
                obj.name,
                plaintext,
            ),
        )

    @admin.action(description="Revoke the selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[GatewayKey]) -> None:
        prefixes = list(queryset.filter(revoked_at__isnull=True).values_list("prefix", flat=True))
        for prefix in prefixes:
            gateway_key_revoke(prefix=prefix)
        count = len(prefixes)
        self.message_user(request, f"{count} key(s) revoked.", messages.SUCCESS)
