"""Health endpoints (Kubernetes probes, people, monitoring); each is one call deep.

Public, and they answer only a status (``{"status": "ok"}`` or ``{"status": "failing"}``, whatever
format is asked for), so an anonymous caller learns nothing about the deployment:

* ``/health/live/``: the process answers; no dependency is asked (a broken database must never get
  the pod restarted).
* ``/health/ready/``: the database only (never Redis or a provider): what a pod needs to take traffic;
  503 while it fails.

For staff logged in to admin, or monitoring sending ``Authorization: Bearer <HEALTH_MONITORING_TOKEN>``
(compared in constant time); anyone else gets 401 with the JSON error envelope and nothing else:

* ``/health/`` and ``/health/detailed/``: every check (``reliability.health.all_checks``), with the
  diagnoses (hosts, hotels, instance ids). django-health-check's view with our checks: HTML, text,
  JSON (``Accept: application/json`` or ``?format=json``), OpenMetrics. Status ``ok`` or ``degraded``
  (warnings, a provider outage the bot rides out) answer 200; ``failing`` (a critical check: guests
  cannot be answered at all) answers 503, never the library's 500 (which reads as a crashed view).
* ``/health/circuit-breakers/``, ``/health/degradation/`` and ``/health/dlq/``: JSON overviews of
  the breakers, the degradation state and the dead letters.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Generator
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from health_check.base import HealthCheck
from health_check.views import HealthCheckView

from hotelbot.exceptions import error_body
from reliability import degradation, health, selectors
from reliability.dead_letters import dead_letter_summary

#: Status of an unhealthy answer: 503 (the service is unavailable), not django-health-check's 500.
UNHEALTHY_STATUS = 503


# --- who may read the detailed pages --------------------------------------------------------------
def monitoring_token_valid(request: HttpRequest) -> bool:
    """``Authorization: Bearer <HEALTH_MONITORING_TOKEN>``, compared in constant time (never when unset)."""
    expected = settings.HEALTH_MONITORING_TOKEN
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), expected.encode())


def _staff(user: Any) -> bool:
    return bool(getattr(user, "is_active", False) and getattr(user, "is_staff", False))


def staff_or_monitoring(request: HttpRequest) -> bool:
    """The monitoring token (no database needed), else a staff session (read from the database:
    while it is down, only the token opens the pages)."""
    if monitoring_token_valid(request):
        return True
    try:
        return _staff(request.user)
    except DatabaseError:
        return False


async def astaff_or_monitoring(request: HttpRequest) -> bool:
    if monitoring_token_valid(request):
        return True
    try:
        return _staff(await request.auser())
    except DatabaseError:
        return False


def refused() -> JsonResponse:
    """401 with the JSON envelope, the same for a missing, wrong or unset token (no oracle)."""
    response = JsonResponse(
        error_body(
            "not_authenticated",
            "This health page is for staff (log in to admin) or monitoring (Authorization: Bearer "
            "<HEALTH_MONITORING_TOKEN>). /health/live/ and /health/ready/ are public.",
        ),
        status=401,
    )
    response["WWW-Authenticate"] = 'Bearer realm="hotelbot health"'
    return response


def monitoring_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A sync view for staff or monitoring; anyone else gets :func:`refused`."""

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not staff_or_monitoring(request):
            return refused()
        return view(request, *args, **kwargs)

    return guarded


# --- the probe views -------------------------------------------------------------------------------
class HealthView(HealthCheckView):
    """``scope``: ``live`` (no checks), ``ready`` (database), both public; or ``all`` (staff/monitoring)."""

    scope = "all"

    def get_checks(self) -> Generator[HealthCheck, None, None]:
        if self.scope == "live":
            return
        yield from health.readiness_checks() if self.scope == "ready" else health.all_checks()

    async def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if self.scope != "all":
            return await self._status_only()
        if not await astaff_or_monitoring(request):
            return refused()
        response: HttpResponse = await super().get(request, *args, **kwargs)
        if response.status_code == 500:  # the library's answer to any error, warnings included
            response.status_code = UNHEALTHY_STATUS if health.failing(self.results) else 200
        return response

    async def _status_only(self) -> JsonResponse:
        checks = list(self.get_checks())
        self.results = [await check.get_result() for check in checks]
        failing = bool(health.failing(self.results))
        return JsonResponse(
            {"status": health.FAILING if failing else health.OK},
            status=UNHEALTHY_STATUS if failing else 200,
        )

    def render_to_response_json(self, status: int) -> JsonResponse:
        status = UNHEALTHY_STATUS if health.failing(self.results) else 200
        return JsonResponse(health.describe(self.results), status=status)


@never_cache
@require_GET
@monitoring_only
def circuit_breakers(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"breakers": selectors.breaker_overview()})


@never_cache
@require_GET
@monitoring_only
def degradation_state(request: HttpRequest) -> JsonResponse:
    return JsonResponse(degradation.degradation_status())


@never_cache
@require_GET
@monitoring_only
def dead_letters(request: HttpRequest) -> JsonResponse:
    return JsonResponse(dead_letter_summary())
