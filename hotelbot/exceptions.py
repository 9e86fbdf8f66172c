"""The project's error tree and the one JSON envelope every API error is rendered in.

Envelope: ``{"error": {"code": "<machine code>", "message": "<human text>", "details": {...}}}``.
No stack trace or internal detail ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError
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
    if isinstance(exc, OperationalError | InterfaceError):
        # The database is down or unreachable: tell the caller to come back (Green API redelivers).
        logger.warning("database unavailable: %s", exc)
        return Response(
            error_body("database_unavailable", ServiceUnavailable.default_message),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "30"},
        )
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
    if isinstance(exc, DatabaseError):
        logger.exception("database error")
    else:
        logger.exception("unhandled error in API view")
    return Response(
        error_body("server_error", HotelbotError.default_message),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
