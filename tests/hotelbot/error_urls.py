"""A URLconf for the error-envelope tests: the project's URLs plus views that fail on purpose."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hotelbot.urls import handler400, handler403, handler404, handler500
from hotelbot.urls import urlpatterns as project_urlpatterns

SECRET = "db-password-hunter2 at /srv/hotelbot/secret.py line 42"

FAILURES: dict[str, BaseException] = {
    "integrity": IntegrityError(f"duplicate key value violates unique constraint ({SECRET})"),
    "operational": OperationalError(f"connection to server failed ({SECRET})"),
    "runtime": RuntimeError(SECRET),
}


class _Input(serializers.Serializer[Any]):
    name = serializers.CharField()
    count = serializers.IntegerField(min_value=1)


class FailingApiView(APIView):
    """A DRF view: GET ?kind=... raises that failure; POST validates ``_Input``."""

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []
    throttle_classes: list[type] = []

    def get(self, request: Request) -> Response:
        raise FAILURES[request.query_params["kind"]]

    def post(self, request: Request) -> Response:
        _Input(data=request.data).is_valid(raise_exception=True)
        return Response({"ok": True})


def failing_django_view(request: HttpRequest) -> HttpResponse:
    """A plain Django view (not DRF): its exception reaches Django's handler500."""
    raise FAILURES[request.GET.get("kind", "runtime")]


urlpatterns = [
    path("api/test/drf/", FailingApiView.as_view()),
    path("api/test/django/", failing_django_view),
    path("pages/test/django/", failing_django_view),
    *project_urlpatterns,
]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
