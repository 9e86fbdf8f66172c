"""Health endpoints (Kubernetes probes, people, monitoring); each is one call deep.

* ``/health/live/``: the process answers; no dependency is asked (a broken database must never get
  the pod restarted).
* ``/health/ready/``: the database only (never Redis or a provider): what a pod needs to take traffic.
* ``/health/`` and ``/health/detailed/``: every check (``reliability.health.all_checks``).
* ``/health/circuit-breakers/``, ``/health/degradation/`` and ``/health/dlq/``: JSON overviews of
  the breakers, the degradation state and the dead letters.

The probe endpoints are django-health-check's view with our checks: HTML, text, JSON
(``Accept: application/json`` or ``?format=json``), OpenMetrics. Unlike the library, a *warning*
(an open breaker, a dead-letter backlog, a non-critical check) answers 200; only a failing critical
check answers 500.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from health_check.base import HealthCheck
from health_check.views import HealthCheckView

from reliability import degradation, health, selectors


class HealthView(HealthCheckView):
    """``scope``: ``live`` (no checks), ``ready`` (database) or ``all``."""

    scope = "all"

    def get_checks(self) -> Generator[HealthCheck, None, None]:
        if self.scope == "live":
            return
        yield from health.readiness_checks() if self.scope == "ready" else health.all_checks()

    async def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response: HttpResponse = await super().get(request, *args, **kwargs)
        if response.status_code == 500 and not health.failing(self.results):
            response.status_code = 200  # warnings only
        return response

    def render_to_response_json(self, status: int) -> JsonResponse:
        status = 500 if health.failing(self.results) else 200
        return JsonResponse(health.describe(self.results), status=status)


@never_cache
@require_GET
def circuit_breakers(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"breakers": selectors.breaker_overview()})


@never_cache
@require_GET
def degradation_state(request: HttpRequest) -> JsonResponse:
    return JsonResponse(degradation.degradation_status())


@never_cache
@require_GET
def dead_letters(request: HttpRequest) -> JsonResponse:
    return JsonResponse(selectors.dead_letter_summary())
