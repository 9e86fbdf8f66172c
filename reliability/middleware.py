"""Middleware of the reliability layer."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from django.db import Error, IntegrityError
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from hotelbot.exceptions import (
    DATABASE_UNAVAILABLE,
    JSON_PREFIXES,
    DatabaseFailure,
    ErrorSpec,
    classify_database_error,
    database_retry_after,
    error_response,
    note_database_error,
    noted_database_error,
)
from reliability import database_breaker, degradation
from reliability.breaker import CircuitOpenError, Guard
from reliability.models import Switch

logger = logging.getLogger(__name__)


# --- The database breaker (issue 9, item 5) -------------------------------------------------------
class DatabaseBreakerMiddleware:
    """Fail fast while the database is down; map database errors to clear answers.

    Every request that needs the database passes the ``database`` breaker
    (``reliability.database_breaker``): while it is open the request is answered at once, before
    sessions, authentication or any view touch the database, with 503 + Retry-After: the error
    envelope on JSON routes (the webhook, so Green API redelivers; the API; health), a maintenance
    page elsewhere (admin). In half-open one request probes with ``SELECT 1`` first.

    Database errors reaching this layer (a view's exception, or Django's 500 for one raised in an
    inner middleware; the DRF handler answers API errors itself and notes them) are answered by
    kind: unreachable/down (``OperationalError``) ``database_unavailable`` 503; connection broken
    (``InterfaceError``) ``database_connection_lost`` 503; lock/deadlock/timeout ``database_busy``
    503; any other ``DatabaseError`` ``database_error`` 500 (the envelope on JSON routes, Django's
    own 500 page elsewhere: that is a bug, not an outage). Only the first two count as breaker
    failures.

    Not guarded (they need no database, or bound their own checks): ``/health/live/``, ``/health/``,
    ``/health/detailed/``, ``/metrics``, static files. ``/health/ready/`` is guarded: it answers 503
    at once while the breaker is open.
    """

    EXEMPT_PATHS = frozenset({"/health/", "/health/live/", "/health/detailed/", "/metrics"})
    EXEMPT_PREFIXES = ("/static/",)
    JSON_PREFIXES = ("/api/", "/webhooks/", "/health/")
    TEMPLATE = "maintenance/database.html"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path in self.EXEMPT_PATHS or path.startswith(self.EXEMPT_PREFIXES):
            return self.get_response(request)
        cb = database_breaker.breaker()
        try:
            with cb.guard() as guard:
                if not guard.probe:
                    return self._serve(request, guard)
                error = database_breaker.probe()
                guard.record_outcome(database_breaker.outcome_of(error, used_database=True))
            answer = None if error is None else self.error_response(request, error)
            if answer is not None:  # still down (or busy): the probe's answer is the request's
                return answer
            with cb.guard() as guard:  # the probe closed it: serve the request
                return self._serve(request, guard)
        except CircuitOpenError as e:
            return self.open_response(request, e.retry_after)

    def _serve(self, request: HttpRequest, guard: Guard) -> HttpResponse:
        # The degradation snapshot is most requests' first read (DegradationMiddleware, next): if
        # it meets the outage, answer now (the view would wait another pool timeout for the same
        # answer). Paths it exempts (health: their checks answer for the database) read no snapshot.
        exempt = request.path_info.startswith(DegradationMiddleware.EXEMPT_PREFIXES)
        error = None if exempt else degradation.prime()
        if error is not None:
            note_database_error(request, error)
            guard.record_outcome(database_breaker.outcome_of(error, used_database=True))
            answer = self.error_response(request, error)
            if answer is not None:
                return answer
        response = self.get_response(request)
        guard.record_outcome(database_breaker.request_outcome(request))
        error = noted_database_error(request)
        if error is not None and response.status_code == 500:  # Django's 500 page for it
            return self.error_response(request, error, logged=True) or response
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, Error):  # DatabaseError and InterfaceError
            return None
        note_database_error(request, exception)
        return self.error_response(request, exception)

    # -- answers -----------------------------------------------------------------------------------

    def wants_json(self, request: HttpRequest) -> bool:
        return request.path_info.startswith(self.JSON_PREFIXES) or "json" in request.headers.get("Accept", "")

    def error_response(
        self, request: HttpRequest, error: BaseException, *, logged: bool = False
    ) -> HttpResponse | None:
        if isinstance(error, IntegrityError):
            return None  # a conflict, not the database failing: the envelope's 409 (hotelbot.exceptions)
        failure = classify_database_error(error)
        if not failure.retryable and not self.wants_json(request):
            if not logged:
                logger.error("database error on %s", request.path_info, exc_info=error)
            return None  # HTML keeps Django's 500 page (and its mail to ADMINS): a bug, not an outage
        return self._answer(request, failure, {}, error=error)

    def open_response(self, request: HttpRequest, retry_in: float) -> HttpResponse:
        details = {"breaker": database_breaker.NAME, "retry_in": max(1, math.ceil(retry_in))}
        return self._answer(request, DATABASE_UNAVAILABLE, details)

    def _answer(
        self,
        request: HttpRequest,
        failure: DatabaseFailure,
        details: dict[str, object],
        *,
        error: BaseException | None = None,
    ) -> HttpResponse:
        headers = {"Retry-After": database_retry_after()} if failure.retryable else {}
        if self.wants_json(request):  # the envelope, logged once (hotelbot.exceptions)
            spec = ErrorSpec(
                failure.http_status,
                failure.code,
                failure.message,
                details,
                headers=headers,
                internal=not failure.retryable,
            )
            return error_response(request, spec, error)
        context = {"code": failure.code, "message": failure.message, "retry_after": database_retry_after()}
        response = HttpResponse(render_to_string(self.TEMPLATE, context), status=failure.http_status)
        for name, value in headers.items():
            response[name] = value
        logger.warning("%s on %s (maintenance page)", failure.code, request.path_info)
        response._has_been_logged = True  # type: ignore[attr-defined]  # Django logs it no second time
        return response


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
