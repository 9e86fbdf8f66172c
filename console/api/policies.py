"""Who may call the reliability API, how often, and how its lists are paged."""

from __future__ import annotations

from typing import Any

from rest_framework.pagination import CursorPagination
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from messaging.permissions import is_operations
from reliability import ratelimit

READ_SCOPE = "reliability_read"
WRITE_SCOPE = "reliability_write"


class IsOperations(BasePermission):
    """Superusers and the operations group: breakers are shared by every hotel."""

    message = "Only the operations group may see or change circuit breakers."

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_operations(request.user)


class HasModelPermissions(BasePermission):
    """The Django model permissions a view declares: ``read_perms`` for GET, HEAD and OPTIONS,
    ``write_perms`` for the rest (e.g. ``("reliability.change_deadletter",)``).

    Checked before the view looks anything up, so a missing permission is a 403 for every id
    (nothing can be probed); the hotel scope is the services' (another hotel's id: 404). A view
    that declares nothing for a method is refused: no call goes unchecked by omission.
    """

    message = "You do not have the permission this needs (ask an administrator to grant it)."

    def has_permission(self, request: Request, view: Any) -> bool:
        attr = "read_perms" if request.method in SAFE_METHODS else "write_perms"
        perms: tuple[str, ...] = tuple(getattr(view, attr, ()) or ())
        user = request.user
        return bool(perms) and user is not None and user.is_active and user.has_perms(perms)


class ReliabilityThrottle(BaseThrottle):
    """Per client (the authenticated user, token or session; anonymous calls by IP), with one
    budget for reads (GET, HEAD, OPTIONS) and one for writes, shared by every endpoint
    (``DEFAULT_THROTTLE_RATES["reliability_read"]`` / ``["reliability_write"]``, env
    ``API_THROTTLE_READ`` / ``API_THROTTLE_WRITE``; read at call time, so a settings change applies
    at once).

    Counted by :func:`reliability.ratelimit.admit` -- Redis when configured, per process while it
    is down -- not in the cache: with ``IGNORE_EXCEPTIONS`` a cache-based throttle silently stops
    limiting while Redis is down. A refusal is 429 with ``Retry-After`` in the error envelope.
    """

    def __init__(self) -> None:
        self._retry_after: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        scope = READ_SCOPE if request.method in SAFE_METHODS else WRITE_SCOPE
        rates: dict[str, Any] = api_settings.DEFAULT_THROTTLE_RATES
        rate = ratelimit.Rate.parse(rates.get(scope))
        if rate is None:
            return True
        user = request.user
        client = (
            f"user:{user.pk}"
            if user is not None and user.is_authenticated
            else f"ip:{self.get_ident(request)}"
        )
        admission = ratelimit.admit(scope=scope, client=client, rate=rate)
        self._retry_after = admission.retry_after
        return admission.allowed

    def wait(self) -> float | None:
        return self._retry_after


class NewestFirstCursor(CursorPagination):
    """Stable pages over a list that grows while it is read (no offset drift, no skipped rows)."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
