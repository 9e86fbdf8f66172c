"""The staff's middleware (sessions, user, flash messages) runs everywhere but the Green API webhook."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from hotelbot.middleware import AuthenticationMiddleware, MessageMiddleware, SessionMiddleware

pytestmark = pytest.mark.django_db


def _seen(path: str) -> set[str]:
    """What the three middleware, in settings order, left on a request to ``path``."""
    seen: set[str] = set()

    def view(request: HttpRequest) -> HttpResponse:
        seen.update(name for name in ("session", "user", "_messages") if hasattr(request, name))
        return HttpResponse("ok")

    messages: Any = MessageMiddleware(view)  # sync, as Django chains them
    inner: Any = AuthenticationMiddleware(messages)
    response: Any = SessionMiddleware(inner)(RequestFactory().post(path))
    assert response.status_code == 200
    return seen


def test_the_webhook_gets_no_session_user_or_messages():
    assert _seen("/webhooks/green-api/1101000001/") == set()
    assert _seen("/webhooks/green-api/") == set()


@pytest.mark.parametrize("path", ["/admin/", "/api/v1/dead-letters/", "/console/", "/webhooksx/"])
def test_every_other_path_gets_them_as_before(path):
    assert _seen(path) == {"session", "user", "_messages"}


def test_they_are_djangos_own_in_the_settings():
    """Subclasses of Django's, so admin's checks (admin.E408-E410) and anything else that looks for
    Django's classes in MIDDLEWARE still find them."""
    from django.contrib.auth.middleware import AuthenticationMiddleware as Auth
    from django.contrib.messages.middleware import MessageMiddleware as Messages
    from django.contrib.sessions.middleware import SessionMiddleware as Sessions

    assert issubclass(SessionMiddleware, Sessions)
    assert issubclass(AuthenticationMiddleware, Auth)
    assert issubclass(MessageMiddleware, Messages)
    names = [m.rsplit(".", 1)[1] for m in settings.MIDDLEWARE]
    assert (
        names.index("SessionMiddleware")
        < names.index("AuthenticationMiddleware")
        < names.index("MessageMiddleware")
    )
