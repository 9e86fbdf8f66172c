"""Project middleware."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from hotelbot.logs import clean_request_id, request_id

HEADER = "X-Request-ID"


class RequestIdMiddleware:
    """The request id: taken from ``X-Request-ID`` when it is a safe token, else generated; set in
    the logging context for the request (and the Celery tasks it publishes), returned in the
    response's ``X-Request-ID``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rid = clean_request_id(request.headers.get(HEADER))
        token = request_id.set(rid)
        try:
            response = self.get_response(request)
        finally:
            request_id.reset(token)
        response[HEADER] = rid
        return response
