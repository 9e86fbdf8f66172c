"""Degradation in admin (operations only, as every non-scoped admin: console.site wraps it in
OperationsOnly): rules, the state with the manual override, maintenance, and the event log. Every
change goes through ``reliability.degradation`` (audited)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from console.admin.mixins import ReadOnlyMixin
from hotelbot.exceptions import HotelbotError
from reliability import degradation
from reliability.models import (
    AuditEntry,
    DegradationEvent,
    DegradationLevel,
    DegradationRule,
    DegradationState,
    DependencyMaintenance,
    Switch,
)


class RuleForm(forms.ModelForm):
    switches_off = forms.MultipleChoiceField(
        choices=Switch.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Switches turned off while the condition holds.",
    )

    class Meta:
        model = DegradationRule
        fields = (
            "name",
            "enabled",
            "condition",
            "target",
            "threshold",
            "level",
            "switches_off",
            "description",
        )


@admin.register(DegradationRule)
class DegradationRuleAdmin(admin.ModelAdmin):
    form = RuleForm
    list_display = ("name", "enabled", "condition", "target", "threshold", "level", "switches_off")
    list_filter = ("enabled", "condition", "level")
    list_editable = ("enabled",)
    search_fields = ("name", "target", "description")

    def save_model(self, request: HttpRequest, obj: DegradationRule, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        from reliability.audit import audit_record

        audit_record(
            actor=request.user,
            via=AuditEntry.Via.ADMIN,
            action="degradation.rule_change" if change else "degradation.rule_add",
            target=obj,
            details={"changed": list(form.changed_data)},
        )


class OverrideForm(forms.ModelForm):
    """The state row's only editable part: the override (the service validates and applies it)."""

    override_level = forms.TypedChoiceField(
        choices=[("", "— none: the rules decide —"), *DegradationLevel.choices],
        coerce=int,
        empty_value=None,
        required=False,
        help_text="Hold this level until the override ends or is cleared (empty: clear it).",
    )
    override_switches_off = forms.MultipleChoiceField(
        choices=Switch.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Switches off while the override holds.",
    )
    minutes = forms.IntegerField(
        required=False, min_value=1, help_text="The override ends by itself after this many minutes."
    )

    class Meta:
        model = DegradationState
        fields = ("override_level", "override_switches_off", "override_reason")


@admin.register(DegradationState)
class DegradationStateAdmin(admin.ModelAdmin):
    form = OverrideForm
    list_display = ("__str__", "switches_off", "cause", "since", "override_level", "override_until")
    readonly_fields = (
        "level",
        "switches_off",
        "cause",
        "since",
        "maintenance",
        "override_until",
        "override_actor",
        "auto_level",
        "auto_switches_off",
        "auto_cause",
        "clear_since",
        "recovery_level",
        "evaluated_at",
    )
    fieldsets = (
        ("In force", {"fields": ("level", "switches_off", "cause", "since", "maintenance")}),
        (
            "Manual override",
            {
                "fields": (
                    "override_level",
                    "override_switches_off",
                    "override_reason",
                    "minutes",
                    "override_until",
                    "override_actor",
                )
            },
        ),
        (
            "Rules (after hysteresis)",
            {"fields": ("auto_level", "auto_switches_off", "auto_cause", "clear_since", "recovery_level")},
        ),
        ("Bookkeeping", {"fields": ("evaluated_at",)}),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: DegradationState, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            if data["override_level"] is None:
                if DegradationState.objects.filter(pk=obj.pk, override_level__isnull=False).exists():
                    degradation.degradation_override_clear(
                        actor=request.user, via=AuditEntry.Via.ADMIN, reason=data["override_reason"]
                    )
            else:
                degradation.degradation_override_set(
                    level=data["override_level"],
                    reason=data["override_reason"],
                    until=degradation.override_until(data["minutes"]),
                    switches_off=data["override_switches_off"],
                    actor=request.user,
                    via=AuditEntry.Via.ADMIN,
                )
        except HotelbotError as e:
            self.message_user(request, e.message, messages.ERROR)


class MaintenanceForm(forms.ModelForm):
    minutes = forms.IntegerField(
        required=False, min_value=1, help_text="Maintenance ends by itself after this many minutes."
    )

    class Meta:
        model = DependencyMaintenance
        fields = ("dependency", "reason")


@admin.register(DependencyMaintenance)
class DependencyMaintenanceAdmin(admin.ModelAdmin):
    form = MaintenanceForm
    list_display = ("dependency", "active", "reason", "until", "actor", "started_at", "ended_at", "ended_by")
    list_filter = ("active", "dependency")
    actions = ["end_maintenance"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("dependency", "reason", "until", "actor", "active", "started_at", "ended_at", "ended_by")

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is not None:
            kwargs["form"] = forms.ModelForm
            kwargs["fields"] = ()
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request: HttpRequest, obj: DependencyMaintenance, form: Any, change: bool) -> None:
        if change:
            return
        try:
            row = degradation.maintenance_start(
                dependency=form.cleaned_data["dependency"],
                reason=form.cleaned_data["reason"],
                until=degradation.override_until(form.cleaned_data.get("minutes")),
                actor=request.user,
                via=AuditEntry.Via.ADMIN,
            )
        except HotelbotError as e:
            self.message_user(request, e.message, messages.ERROR)
            return
        obj.pk = row.pk

    @admin.action(
        description="End maintenance (waiting work drains at the provider's rate)", permissions=["change"]
    )
    def end_maintenance(self, request: HttpRequest, queryset: QuerySet[DependencyMaintenance]) -> None:
        ended = 0
        for dependency in set(queryset.filter(active=True).values_list("dependency", flat=True)):
            degradation.maintenance_end(dependency=dependency, actor=request.user, via=AuditEntry.Via.ADMIN)
            ended += 1
        self.message_user(request, f"{ended} maintenance(s) ended.", messages.SUCCESS)


@admin.register(DegradationEvent)
class DegradationEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("at", "from_level", "to_level", "switches_off", "cause", "actor")
    list_filter = ("to_level", "actor")
    date_hierarchy = "at"
