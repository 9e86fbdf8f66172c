"""The project's error tree and the one JSON envelope every API error is rendered in.

Envelope: ``{"error": {"code": "<machine code>", "message": "<human text>", "details": {...}}}``.
No stack trace or internal detail ever reaches a client.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import Error, InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_default_handler

logger = logging.getLogger(__name__)


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


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


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
    return getattr(exc, "default_code", "error")


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF ``EXCEPTION_HANDLER``: everything becomes the envelope; nothing becomes a traceback."""
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    if isinstance(exc, HotelbotError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.http_status)
    if isinstance(exc, Error):  # DatabaseError and InterfaceError
        request = context.get("request")
        if request is not None:
            note_database_error(request, exc)
        failure = classify_database_error(exc)
        if failure.retryable:
            # Down, unreachable or busy: tell the caller to come back (Green API redelivers).
            logger.warning("%s: %s: %s", failure.code, type(exc).__name__, exc)
            return Response(
                error_body(failure.code, failure.message),
                status=failure.http_status,
                headers={"Retry-After": database_retry_after()},
            )
        logger.exception("database error")
        return Response(error_body(failure.code, failure.message), status=failure.http_status)
    if isinstance(exc, drf_exceptions.APIException):
        response = drf_default_handler(exc, context)
        if response is None:  # pragma: no cover - DRF always answers APIException
            return None
        if isinstance(exc, drf_exceptions.ValidationError):
            response.data = error_body("invalid", "The request is invalid.", exc.detail)
        else:
            detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
            response.data = error_body(_drf_code(exc), str(detail))
        return response
    logger.exception("unhandled error in API view")
    return Response(
        error_body("server_error", HotelbotError.default_message),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
