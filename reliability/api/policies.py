"""Who may call the reliability API, how often, and how its lists are paged."""

from __future__ import annotations

from typing import Any

from rest_framework.pagination import CursorPagination
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

from reliability.tenancy import is_operations

READ_SCOPE = "reliability_read"
WRITE_SCOPE = "reliability_write"


class IsOperations(BasePermission):
    """Superusers and the operations group: breakers are shared by every hotel."""

    message = "Only the operations group may see or change circuit breakers."

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_operations(request.user)


class ReliabilityThrottle(ScopedRateThrottle):
    """A scoped throttle per user with one budget for reads (GET, HEAD, OPTIONS) and one for writes.

    The scope follows the method, not the view, so every endpoint shares the two budgets
    (``DEFAULT_THROTTLE_RATES["reliability_read"]`` / ``["reliability_write"]``, env
    ``API_THROTTLE_READ`` / ``API_THROTTLE_WRITE``). Rates are read at call time, so a settings
    change (tests, ``override_settings``) applies at once. Counted in the ``default`` cache:
    locmem per process on the embedded default, Redis with services.
    """

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = READ_SCOPE if request.method in SAFE_METHODS else WRITE_SCOPE
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        # SimpleRateThrottle's check (ScopedRateThrottle's own reads the scope from the view).
        return super(ScopedRateThrottle, self).allow_request(request, view)

    def get_rate(self) -> str | None:
        rates: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES
        rate = rates.get(self.scope or "")
        return None if rate is None else str(rate)


class NewestFirstCursor(CursorPagination):
    """Stable pages over a list that grows while it is read (no offset drift, no skipped rows)."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
