"""Middleware of the reliability layer."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from hotelbot.exceptions import JSON_PREFIXES, ErrorSpec, error_response
from reliability import degradation
from reliability.models import Switch


# --- Degradation (issue 9) ---------------------------------------------------------------------
class DegradationMiddleware:
    """Enforce the degradation switches before any view (or session, CSRF, database work) runs.

    - ``webhook_intake`` off: the Green API webhook answers 503 + Retry-After; Green API keeps the
      notifications (up to 24 h) and redelivers them in order, so nothing is lost or stored twice.
    - ``api_writes`` off: unsafe methods under ``/api/`` answer 503.
    - read-only mode (level CRITICAL, or the ``writes`` switch off): every unsafe method answers 503.

    Always reachable: health, metrics, admin login/logout, the degradation API and the admin pages
    that change the override and maintenance (so staff can lift what they set). JSON routes get the
    error envelope; other pages (admin) a small maintenance page. The check reads the process-local
    snapshot: no I/O per request (``reliability.degradation``).
    """

    SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
    EXEMPT_PREFIXES = (
        "/health/",
        "/metrics",
        "/admin/login/",
        "/admin/logout/",
        "/api/v1/degradation/",
        "/admin/reliability/degradationstate/",
        "/admin/reliability/dependencymaintenance/",
    )
    WEBHOOK_PREFIX = "/webhooks/"
    JSON_PREFIXES = JSON_PREFIXES

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = self.refusal(request)
        if refusal is not None:
            return refusal
        return self.get_response(request)

    def refusal(self, request: HttpRequest) -> HttpResponse | None:
        path = request.path_info
        if path.startswith(self.EXEMPT_PREFIXES):
            return None
        snap = degradation.snapshot()
        if not snap.switches_off and not snap.read_only:
            return None
        if path.startswith(self.WEBHOOK_PREFIX) and Switch.WEBHOOK_INTAKE in snap.switches_off:
            return self._unavailable(request, "intake_paused", "Webhook intake is paused; retry later.")
        if request.method in self.SAFE_METHODS:
            return None
        if snap.read_only:
            return self._unavailable(request, "read_only", "The service is read-only for now; retry later.")
        if path.startswith("/api/") and Switch.API_WRITES in snap.switches_off:
            return self._unavailable(request, "api_writes_off", "API writes are paused; retry later.")
        return None

    def _unavailable(self, request: HttpRequest, code: str, message: str) -> HttpResponse:
        retry_after = str(degradation.retry_after_seconds())
        if request.path_info.startswith(self.JSON_PREFIXES) or "json" in request.headers.get("Accept", ""):
            details = {"level": degradation.Level(degradation.snapshot().level).label.upper()}
            spec = ErrorSpec(503, code, message, details, headers={"Retry-After": retry_after})
            return error_response(request, spec)
        html = render_to_string("degradation/maintenance.html", {"message": message}, request=None)
        response = HttpResponse(html, status=503)
        response["Retry-After"] = retry_after
        return response
