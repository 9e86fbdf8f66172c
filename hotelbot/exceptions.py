"""The project's error tree and the one JSON envelope every error is rendered in.

Envelope (built only by :func:`error_body`)::

    {"error": {"code": "<machine code>", "message": "<human text>", "details": {...},
               "request_id": "<the X-Request-ID of the request>"}}

Every path renders it: the API and the webhook (DRF's ``EXCEPTION_HANDLER`` below), the
middleware's refusals (degradation, rate limits: :func:`error_response`), and Django's
404/500/400/403 handlers on JSON routes (``/api/``, ``/webhooks/``; ``hotelbot/urls.py``). Other
pages (admin) keep Django's HTML error pages. No stack trace or internal detail reaches a client.

Exceptions map to statuses in one place (:func:`describe`): our :class:`HotelbotError` tree and
DRF's exceptions keep theirs (validation errors field by field), an unreachable database
(``OperationalError``/``InterfaceError``) is 503 with ``Retry-After``, ``IntegrityError`` is 409,
anything else 500 ``internal``.

Every error is logged once, on Django's request logger (``django.request``, where ``ADMINS`` mail
for 500s is attached), with its status, code and request id; the response is marked logged so
Django does not log it a second time. 4xx and refusals (503 with Retry-After) are warnings; a 500
is an error with its traceback.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from hotelbot.logs import request_id

#: Django's request logger: handlers attached to it (mail to ADMINS on errors) see every error once.
logger = logging.getLogger("django.request")

#: Routes whose clients read JSON: errors there are the envelope, never an HTML page.
JSON_PREFIXES = ("/api/", "/webhooks/")
#: Seconds a client should wait before retrying after the database failed.
DATABASE_RETRY_AFTER = 30


class HotelbotError(Exception):
    """Root of every error the project raises on purpose."""

    code: str = "error"
    http_status: int = status.HTTP_500_INTERNAL_SERVER_ERROR
    default_message = "Internal error."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        super().__init__(self.message)


class ValidationFailed(HotelbotError):
    code = "invalid"
    http_status = status.HTTP_400_BAD_REQUEST
    default_message = "The request is invalid."


class NotFound(HotelbotError):
    code = "not_found"
    http_status = status.HTTP_404_NOT_FOUND
    default_message = "Not found."


class ServiceUnavailable(HotelbotError):
    code = "unavailable"
    http_status = status.HTTP_503_SERVICE_UNAVAILABLE
    default_message = "The service is temporarily unavailable; retry later."


class ProviderError(HotelbotError):
    """An external provider (Green API, DeepSeek) failed; subclasses live next to each client."""

    code = "provider_error"
    http_status = status.HTTP_502_BAD_GATEWAY
    default_message = "An upstream provider failed."


INTERNAL_MESSAGE = "Internal error."


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """THE envelope; ``request_id`` is the current request's (``hotelbot.logs.request_id``)."""
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details or {},
            "request_id": request_id.get() or None,
        }
    }


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """How one error is answered: status, envelope fields, headers, and whether it is our fault
    (logged as an error with its traceback) or the client's / a dependency's (a warning)."""

    status: int
    code: str
    message: str
    details: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    internal: bool = False


def _drf_code(exc: drf_exceptions.APIException) -> str:
    codes = exc.get_codes()
    if isinstance(codes, str):
        return codes
    return str(getattr(exc, "default_code", "error"))


def _drf_headers(exc: drf_exceptions.APIException) -> dict[str, str]:
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = str(exc.auth_header)  # type: ignore[attr-defined]
    wait = getattr(exc, "wait", None)
    if wait is not None:
        headers["Retry-After"] = str(max(1, math.ceil(float(wait))))
    return headers


def describe(exc: BaseException) -> ErrorSpec:
    """The one mapping from an exception to its answer (DRF views and Django's handlers)."""
    if isinstance(exc, Http404):
        return ErrorSpec(404, "not_found", "Not found.")
    if isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    if isinstance(exc, HotelbotError):
        headers = {"Retry-After": str(DATABASE_RETRY_AFTER)} if exc.http_status == 503 else {}
        return ErrorSpec(exc.http_status, exc.code, exc.message, exc.details, headers)
    if isinstance(exc, OperationalError | InterfaceError):
        # The database is down or unreachable: come back later (Green API redelivers).
        return ErrorSpec(
            503,
            "database_unavailable",
            ServiceUnavailable.default_message,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
        )
    if isinstance(exc, IntegrityError):
        return ErrorSpec(409, "conflict", "The request conflicts with the current state; reload and retry.")
    if isinstance(exc, drf_exceptions.APIException):
        if isinstance(exc, drf_exceptions.ValidationError):
            return ErrorSpec(exc.status_code, "invalid", ValidationFailed.default_message, exc.detail)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return ErrorSpec(exc.status_code, _drf_code(exc), str(detail), headers=_drf_headers(exc))
    # DatabaseError (other than the above) and everything else: our fault, no internals.
    return ErrorSpec(500, "internal", INTERNAL_MESSAGE, internal=True)


def log_error(
    request: HttpRequest | None, response: HttpResponse, spec: ErrorSpec, exc: BaseException | None
) -> None:
    """Log an error response once (and mark it, so Django's own ``log_response`` skips it)."""
    if getattr(response, "_has_been_logged", False):
        return
    path = request.path if request is not None else "-"
    extra = {
        "status_code": response.status_code,
        "request": request,
        "request_id": request_id.get(),
        "error_code": spec.code,
    }
    if spec.internal or response.status_code in (500, 501, 502, 504):
        logger.error("%s %s: %s", response.status_code, spec.code, path, extra=extra, exc_info=exc)
    else:
        reason = f" ({type(exc).__name__}: {exc})" if isinstance(exc, DatabaseError) else ""
        logger.warning("%s %s: %s%s", response.status_code, spec.code, path, reason, extra=extra)
    response._has_been_logged = True  # type: ignore[attr-defined]


def error_response(
    request: HttpRequest | None, spec: ErrorSpec, exc: BaseException | None = None
) -> JsonResponse:
    """The envelope as a plain Django response (middleware, Django's handlers), logged once."""
    response = JsonResponse(error_body(spec.code, spec.message, spec.details), status=spec.status)
    for name, value in spec.headers.items():
        response[name] = value
    log_error(request, response, spec, exc)
    return response


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF ``EXCEPTION_HANDLER``: everything becomes the envelope; nothing becomes a traceback."""
    spec = describe(exc)
    set_rollback()
    response = Response(
        error_body(spec.code, spec.message, spec.details), status=spec.status, headers=spec.headers
    )
    request = context.get("request")
    log_error(getattr(request, "_request", request), response, spec, exc)
    return response


# --- Django's error handlers (hotelbot/urls.py) ------------------------------------------------
def wants_json(request: HttpRequest) -> bool:
    """A JSON route: the API and the webhooks (health and metrics answer in their own formats)."""
    return request.path_info.startswith(JSON_PREFIXES)


def handler400(request: HttpRequest, exception: Exception) -> HttpResponse:
    if wants_json(request):
        return error_response(request, ErrorSpec(400, "bad_request", "Bad request."), None)
    return defaults.bad_request(request, exception)


def handler403(request: HttpRequest, exception: Exception) -> HttpResponse:
    if wants_json(request):
        spec = ErrorSpec(403, "permission_denied", str(drf_exceptions.PermissionDenied.default_detail))
        return error_response(request, spec, None)
    return defaults.permission_denied(request, exception)


def handler404(request: HttpRequest, exception: Exception) -> HttpResponse:
    if wants_json(request):
        return error_response(request, ErrorSpec(404, "not_found", "Not found."), None)
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    """Django calls this inside its ``except`` block: the exception is ``sys.exc_info()``'s."""
    exc = sys.exc_info()[1]
    if wants_json(request):
        spec = (
            describe(exc) if exc is not None else ErrorSpec(500, "internal", INTERNAL_MESSAGE, internal=True)
        )
        return error_response(request, spec, exc)
    return defaults.server_error(request)
