"""Project middleware."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.deprecation import MiddlewareMixin

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


# --- the staff's middleware, not run for the Green API webhook ------------------------------------
#: Green API's notifications: no cookies, no login, no flash messages (the webhook authenticates by
#: its Bearer token, DRF's authentication class). Each middleware below is Django's own, run on
#: every other path (admin, the API, the console) exactly as before.
WEBHOOK_PREFIX = "/webhooks/"


class _NotOnWebhooks(MiddlewareMixin):
    """Passes webhook requests straight on; runs the Django middleware it precedes (in the MRO) on
    every other path. Only for middleware with no ``process_view``/``process_exception`` hooks:
    the handler calls those itself, whatever the path."""

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if request.path_info.startswith(WEBHOOK_PREFIX):
            return self.get_response(request)
        return super().__call__(request)


class SessionMiddleware(_NotOnWebhooks, sessions.SessionMiddleware):
    """Django's sessions, except on the webhook: nothing there reads or writes a session."""


class AuthenticationMiddleware(_NotOnWebhooks, auth.AuthenticationMiddleware):
    """Django's ``request.user``, except on the webhook (DRF sets it from the Bearer token there)."""


class MessageMiddleware(_NotOnWebhooks, messages.MessageMiddleware):
    """Django's flash messages (admin), except on the webhook: nothing there shows one."""
