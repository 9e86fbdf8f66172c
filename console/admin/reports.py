"""Stored reliability reports in admin: read-only, for the operations group (they count every hotel)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from console import tenancy
from console.admin.mixins import ReadOnlyMixin
from reliability.models import ReliabilityReport


@admin.register(ReliabilityReport)
class ReliabilityReportAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "period_start",
        "period_end",
        "replies_done",
        "replies_dead",
        "letters_created",
        "created_at",
    )
    date_hierarchy = "period_start"
    readonly_fields = ("period_start", "period_end", "created_at", "pretty_data")
    exclude = ("data",)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return tenancy.is_operations(request.user) and super().has_view_permission(request, obj)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return tenancy.is_operations(request.user) and super().has_module_permission(request)

    @admin.display(description="replies done")
    def replies_done(self, obj: ReliabilityReport) -> int:
        by_result = (obj.data or {}).get("replies", {}).get("by_result", {})
        return int(by_result.get("done", 0)) + int(by_result.get("degraded", 0))

    @admin.display(description="replies dead")
    def replies_dead(self, obj: ReliabilityReport) -> int:
        return int((obj.data or {}).get("replies", {}).get("by_result", {}).get("dead", 0))

    @admin.display(description="new dead letters")
    def letters_created(self, obj: ReliabilityReport) -> int:
        return int((obj.data or {}).get("dead_letters", {}).get("created", 0))

    @admin.display(description="report")
    def pretty_data(self, obj: ReliabilityReport) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.data, indent=2, sort_keys=True))
