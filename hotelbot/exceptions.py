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
import sqlite3
import sys
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, Error, IntegrityError, InterfaceError, OperationalError
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


# --- Database errors: one mapping for the API, the webhook, admin and the database breaker ---------
@dataclass(frozen=True)
class DatabaseFailure:
    """What a database error means for a request, and whether it says the database is down.

    ``outage`` (counted by the ``database`` breaker): the server cannot be reached or is not
    serving (connection refused/timed out, pool timeout, server closed the connection, shutting
    down or starting up, too many connections, out of resources) or the connection broke
    (``InterfaceError``). A query-level ``OperationalError`` (deadlock, serialization failure, lock
    or statement timeout, SQLite's "database is locked") is worth a retry but proves the server
    answers, so it never trips the breaker; neither does any other ``DatabaseError``.
    """

    code: str
    message: str
    http_status: int
    outage: bool

    @property
    def retryable(self) -> bool:
        return self.http_status == status.HTTP_503_SERVICE_UNAVAILABLE


DATABASE_UNAVAILABLE = DatabaseFailure(
    "database_unavailable", "The database is unavailable; retry later.", 503, outage=True
)
DATABASE_CONNECTION_LOST = DatabaseFailure(
    "database_connection_lost", "The connection to the database was lost; retry later.", 503, outage=True
)
DATABASE_BUSY = DatabaseFailure(
    "database_busy",
    "The database could not finish the request in time (lock, deadlock or timeout); retry.",
    503,
    outage=False,
)
DATABASE_ERROR = DatabaseFailure(
    "database_error", "A database error occurred; it has been logged.", 500, outage=False
)

# PostgreSQL SQLSTATEs of a server that is not serving: connection exceptions (08), insufficient
# resources (53: too many connections, disk full, out of memory), system errors (58), and the
# operator interventions that end sessions (57P01 admin shutdown, 57P02 crash, 57P03 cannot
# connect now: starting up or shutting down; 57P04 database dropped). Other OperationalErrors are query-level.
_OUTAGE_CLASSES = frozenset({"08", "53", "58"})
_OUTAGE_STATES = frozenset({"57P01", "57P02", "57P03", "57P04"})
_SQLITE_OUTAGE = ("unable to open", "disk i/o error", "malformed", "readonly database")
_SQLITE_BUSY = ("locked", "busy")


def classify_database_error(exc: BaseException) -> DatabaseFailure:
    """The :class:`DatabaseFailure` of a Django database exception (driver error in ``__cause__``)."""
    if isinstance(exc, InterfaceError):
        return DATABASE_CONNECTION_LOST
    if not isinstance(exc, OperationalError):
        return DATABASE_ERROR
    cause = exc.__cause__
    if isinstance(cause, sqlite3.Error):
        text = str(cause).lower()
        if any(marker in text for marker in _SQLITE_BUSY):
            return DATABASE_BUSY
        return DATABASE_UNAVAILABLE if any(m in text for m in _SQLITE_OUTAGE) else DATABASE_ERROR
    sqlstate = getattr(cause, "sqlstate", None)  # psycopg; None: a client-side connection failure
    if not sqlstate or sqlstate[:2] in _OUTAGE_CLASSES or sqlstate in _OUTAGE_STATES:
        return DATABASE_UNAVAILABLE
    return DATABASE_BUSY


def database_retry_after() -> str:
    """Retry-After (seconds) of every database 503."""
    return str(max(1, round(float(getattr(settings, "DB_RETRY_AFTER", 30)))))


_NOTED = "_hotelbot_database_error"


def note_database_error(request: Any, exc: BaseException) -> None:
    """Tell the database breaker (``reliability.middleware``) that this request met ``exc``.

    Every adapter that turns a database error into a response itself (the DRF exception handler)
    calls this; Django's own 500 path is covered by a ``got_request_exception`` receiver.
    """
    setattr(getattr(request, "_request", request), _NOTED, exc)


def noted_database_error(request: Any) -> Error | None:
    """The database error noted for this request (``django.db.Error``: ``InterfaceError`` is not a
    ``DatabaseError`` in Django's tree)."""
    noted = getattr(getattr(request, "_request", request), _NOTED, None)
    return noted if isinstance(noted, Error) else None


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
        headers = {"Retry-After": database_retry_after()} if exc.http_status == 503 else {}
        return ErrorSpec(exc.http_status, exc.code, exc.message, exc.details, headers)
    if isinstance(exc, IntegrityError):
        return ErrorSpec(409, "conflict", "The request conflicts with the current state; reload and retry.")
    if isinstance(exc, Error):  # DatabaseError and InterfaceError (not a DatabaseError in Django)
        failure = classify_database_error(exc)
        if failure.retryable:  # down, unreachable or busy: come back later (Green API redelivers)
            return ErrorSpec(
                failure.http_status,
                failure.code,
                failure.message,
                headers={"Retry-After": database_retry_after()},
            )
        return ErrorSpec(failure.http_status, failure.code, failure.message, internal=True)
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
    if isinstance(exc, Error) and context.get("request") is not None:
        note_database_error(context["request"], exc)  # the database breaker counts it
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
