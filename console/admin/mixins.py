"""What several ModelAdmins share."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


class ReadOnlyMixin:
    """Rows the system writes (events, records, audit entries, stored reports): staff look, nobody
    adds or edits them. ``deletable`` rows may still be deleted by whoever holds the delete
    permission (breaker events, deferred statuses: operations clear them); others never.

    Put it first among the bases: ``class XAdmin(ReadOnlyMixin, admin.ModelAdmin)``."""

    deletable = False

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.deletable and super().has_delete_permission(request, obj)  # type: ignore[misc]
