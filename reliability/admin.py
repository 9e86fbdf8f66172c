"""Breakers in admin: thresholds editable with validation, live state, overrides with a reason."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from hotelbot.exceptions import HotelbotError
from reliability import services
from reliability.breaker import registry
from reliability.models import BreakerConfig, BreakerEvent, BreakerState, DeadLetter


class RecordAdmin(admin.ModelAdmin):
    """Rows the system writes (dead letters, breaker state): staff look; nobody adds, edits or deletes."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class BreakerActionForm(helpers.ActionForm):
    reason = forms.CharField(
        required=False, help_text="Why (required to force open, disable or metrics-only)."
    )
    minutes = forms.IntegerField(
        required=False, min_value=1, help_text="Override ends after this many minutes (empty: until cleared)."
    )


@admin.register(BreakerConfig)
class BreakerConfigAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "live_state",
        "live_failure_rate",
        "mode",
        "mode_until",
        "failure_threshold",
        "recovery_timeout",
        "version",
        "updated_at",
    )
    list_filter = ("mode", "window_type")
    search_fields = ("name", "description", "mode_reason")
    readonly_fields = ("version", "updated_at", "live_state", "live_failure_rate")
    action_form = BreakerActionForm
    actions = ["reset", "force_open", "force_close", "disable", "metrics_only"]
    fieldsets = (
        (None, {"fields": ("name", "description", "live_state", "live_failure_rate")}),
        ("Staff override", {"fields": ("mode", "mode_reason", "mode_until")}),
        (
            "When to open",
            {
                "fields": (
                    "failure_threshold",
                    "failure_rate_threshold",
                    "slow_call_rate_threshold",
                    "slow_call_duration",
                    "window_type",
                    "window_size",
                    "minimum_requests",
                    "failure_statuses",
                )
            },
        ),
        (
            "Recovery",
            {
                "fields": (
                    "recovery_timeout",
                    "recovery_timeout_multiplier",
                    "max_recovery_timeout",
                    "half_open_max_calls",
                    "success_threshold",
                    "half_open_max_wait",
                )
            },
        ),
        ("Bookkeeping", {"fields": ("version", "updated_at")}),
    )

    @admin.display(description="live state")
    def live_state(self, obj: BreakerConfig) -> str:
        snap = registry.breaker(obj.name).snapshot()
        wait = f" (retry in {snap.retry_after:.0f}s)" if snap.retry_after else ""
        return f"{snap.state.value}{wait}"

    @admin.display(description="failure rate")
    def live_failure_rate(self, obj: BreakerConfig) -> str:
        snap = registry.breaker(obj.name).snapshot()
        return f"{snap.failure_rate:.0f}% of {snap.calls}"

    def save_model(self, request: HttpRequest, obj: BreakerConfig, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        registry.apply_now(obj.name)

    def _override(self, request: HttpRequest, queryset: QuerySet[BreakerConfig], mode: str) -> None:
        reason = request.POST.get("reason", "")
        minutes = request.POST.get("minutes") or ""
        until = timezone.now() + timedelta(minutes=int(minutes)) if minutes.isdigit() else None
        done = 0
        for name in queryset.values_list("name", flat=True):
            try:
                services.breaker_set_mode(name=name, mode=mode, reason=reason, until=until)
            except HotelbotError as e:
                self.message_user(request, f"{name}: {e.message}", messages.ERROR)
                return
            done += 1
        self.message_user(request, f"{done} breaker(s) set to {mode}.", messages.SUCCESS)

    @admin.action(description="Reset (close, clear counters and override)")
    def reset(self, request: HttpRequest, queryset: QuerySet[BreakerConfig]) -> None:
        names = list(queryset.values_list("name", flat=True))
        for name in names:
            services.breaker_reset(name=name)
        self.message_user(request, f"{len(names)} breaker(s) reset.", messages.SUCCESS)

    @admin.action(description="Force open (reason, optional minutes)")
    def force_open(self, request: HttpRequest, queryset: QuerySet[BreakerConfig]) -> None:
        self._override(request, queryset, BreakerConfig.Mode.FORCED_OPEN)

    @admin.action(description="Force close (clear override)")
    def force_close(self, request: HttpRequest, queryset: QuerySet[BreakerConfig]) -> None:
        self._override(request, queryset, BreakerConfig.Mode.AUTO)

    @admin.action(description="Disable (admit every call; reason, optional minutes)")
    def disable(self, request: HttpRequest, queryset: QuerySet[BreakerConfig]) -> None:
        self._override(request, queryset, BreakerConfig.Mode.DISABLED)

    @admin.action(description="Metrics only (never reject; reason, optional minutes)")
    def metrics_only(self, request: HttpRequest, queryset: QuerySet[BreakerConfig]) -> None:
        self._override(request, queryset, BreakerConfig.Mode.METRICS_ONLY)


@admin.register(BreakerEvent)
class BreakerEventAdmin(admin.ModelAdmin):
    list_display = ("at", "breaker", "from_state", "to_state", "reason", "failure_rate", "source", "process")
    list_filter = ("breaker", "to_state", "source")
    search_fields = ("breaker", "reason", "process")
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(DeadLetter)
class DeadLetterAdmin(RecordAdmin):
    """Read-only: what was accepted but not processed (e.g. quarantined webhook notifications)."""

    list_display = ("created_at", "kind", "status", "subject", "reason_code", "short_reason", "raw_size")
    list_filter = ("kind", "status", "reason_code", "created_at")
    search_fields = ("reason", "subject")
    date_hierarchy = "created_at"
    readonly_fields = (
        "kind",
        "status",
        "subject",
        "reason_code",
        "reason",
        "raw_size",
        "raw_truncated",
        "raw",
        "payload",
        "created_at",
    )

    actions = ["mark_resolved", "mark_discarded"]

    @admin.display(description="reason")
    def short_reason(self, obj: DeadLetter) -> str:
        return obj.reason if len(obj.reason) <= 120 else obj.reason[:119] + "…"

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        """Rows stay read-only; staff who may see dead letters may close them."""
        return request.user.is_active and request.user.is_staff and self.has_view_permission(request)

    def _set_status(self, request: HttpRequest, queryset: QuerySet[DeadLetter], status: str) -> None:
        changed = services.dead_letter_set_status(ids=queryset.values_list("pk", flat=True), status=status)
        self.message_user(request, f"{changed} dead letter(s) marked {status}.", messages.SUCCESS)

    @admin.action(description="Mark resolved", permissions=["resolve"])
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        self._set_status(request, queryset, DeadLetter.Status.RESOLVED)

    @admin.action(description="Mark discarded", permissions=["resolve"])
    def mark_discarded(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        self._set_status(request, queryset, DeadLetter.Status.DISCARDED)


@admin.register(BreakerState)
class BreakerStateAdmin(RecordAdmin):
    """The database store's rows (read-only: only the breaker store writes them)."""

    list_display = ("name", "state", "open_until", "epoch", "updated_at")
    readonly_fields = ("name", "state", "open_until", "epoch", "data", "updated_at")
