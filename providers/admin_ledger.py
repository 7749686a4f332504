"""The ledger's admin pages: completions, attempts and hand-made circuit actions, read-only."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string

from providers.models import Attempt, CircuitAction, Completion
from providers.selectors import completion_timeline


class ReadOnlyAdmin(admin.ModelAdmin):
    """The ledger is written by the fallback service only: view, filter, never edit. A row's
    page shows each field named in `shown_as` through its display method (rounded figures,
    steps counted from 1), as the list does."""

    shown_as: dict[str, str] = {}

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list:
        return [self.shown_as.get(name, name) for name in super().get_fields(request, obj)]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def step_number(position: int | None) -> str:
    """A chain step as the app counts it: from 1 (the ledger stores the 0-based position)."""
    return "—" if position is None else str(position + 1)


def ms_1dp(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def usd_6dp(value: Any) -> str:
    return "—" if value is None else f"{value:.6f}"


def _search_ids(queryset: QuerySet, term: str, *, uuid_field: str, int_field: str | None = None) -> QuerySet:
    """Exact id search: a UUID (with or without dashes) or, for attempts, a row number."""
    term = term.strip()
    try:
        return queryset.filter(**{uuid_field: uuid.UUID(term)})
    except ValueError:
        pass
    if int_field and term.isdigit():
        return queryset.filter(**{int_field: int(term)})
    return queryset.none()


@admin.register(Completion)
class CompletionAdmin(ReadOnlyAdmin):
    readonly_fields = ["attempt_timeline"]
    shown_as = {
        "answered_step": "answered_step_shown",
        "latency_ms": "latency_shown",
        "cost_usd": "cost_shown",
    }
    list_display = [
        "created_at",
        "id",
        "chain_slug",
        "source",
        "outcome",
        "answered_provider",
        "answered_model",
        "answered_step_shown",
        "attempt_count",
        "fallback_used",
        "latency_shown",
        "cost_shown",
    ]
    list_filter = ["outcome", "source", "chain", "answered_provider", "fallback_used", "created_at"]
    list_select_related = ["answered_provider"]
    date_hierarchy = "created_at"
    search_fields = ["id"]
    search_help_text = "A request id (UUID)."

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple:
        if not search_term.strip():
            return queryset, False
        return _search_ids(queryset, search_term, uuid_field="pk"), False

    @admin.display(description="step", ordering="answered_step")
    def answered_step_shown(self, obj: Completion) -> str:
        return step_number(obj.answered_step)

    @admin.display(description="latency (ms)", ordering="latency_ms")
    def latency_shown(self, obj: Completion) -> str:
        return ms_1dp(obj.latency_ms)

    @admin.display(description="cost (USD)", ordering="cost_usd")
    def cost_shown(self, obj: Completion) -> str:
        return usd_6dp(obj.cost_usd)

    @admin.display(description="Attempt timeline")
    def attempt_timeline(self, obj: Completion) -> str:
        """The same timeline the playground and the completion page show (one selector)."""
        timeline = completion_timeline(request_id=obj.pk)
        return render_to_string("providers/admin_attempt_timeline.html", {"timeline": timeline})


@admin.register(Attempt)
class AttemptAdmin(ReadOnlyAdmin):
    shown_as = {"step_position": "step_shown", "latency_ms": "latency_shown", "cost_usd": "cost_shown"}
    list_display = [
        "started_at",
        "completion_id",
        "provider_name",
        "model",
        "step_shown",
        "retry_index",
        "outcome",
        "http_status",
        "latency_shown",
        "cost_shown",
    ]
    list_filter = ["outcome", "source", "chain", "provider", "started_at"]
    date_hierarchy = "started_at"
    search_fields = ["id"]
    search_help_text = "A request id (UUID) or an attempt number."

    @admin.display(description="step", ordering="step_position")
    def step_shown(self, obj: Attempt) -> str:
        return step_number(obj.step_position)

    @admin.display(description="latency (ms)", ordering="latency_ms")
    def latency_shown(self, obj: Attempt) -> str:
        return ms_1dp(obj.latency_ms)

    @admin.display(description="cost (USD)", ordering="cost_usd")
    def cost_shown(self, obj: Attempt) -> str:
        return "unpriced" if obj.cost_usd is None and obj.unpriced else usd_6dp(obj.cost_usd)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple:
        if not search_term.strip():
            return queryset, False
        return _search_ids(queryset, search_term, uuid_field="completion_id", int_field="pk"), False


@admin.register(CircuitAction)
class CircuitActionAdmin(ReadOnlyAdmin):
    """Who opened, closed or reset a circuit by hand, and when (providers.services.circuit_force)."""

    list_display = ["created_at", "provider", "model", "action", "username"]
    list_filter = ["action", "provider", "created_at"]
    date_hierarchy = "created_at"
