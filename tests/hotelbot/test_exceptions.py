"""The one error envelope on every path, and every error logged once with its request id."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from messaging.models import Message
from reliability import degradation
from reliability.models import Switch
from tests.factories import HotelFactory
from tests.hotelbot.error_urls import SECRET
from tests.messaging import payloads

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.hotelbot.error_urls")]

WEBHOOK = "/webhooks/green-api/"


def envelope(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert the response is exactly the envelope (with this request's id) and return its error."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code
    assert error["request_id"] == response["X-Request-ID"]
    assert SECRET not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    return dict(error)


def records_of(caplog: pytest.LogCaptureFixture, rid: str) -> list[logging.LogRecord]:
    """The error log lines of one request (other loggers, e.g. a breaker's transition, may log too)."""
    return [
        r
        for r in caplog.records
        if r.name == "django.request" and (getattr(r, "request_id", None) == rid or rid in r.getMessage())
    ]


@pytest.fixture
def staff() -> User:
    return User.objects.create_user("stella", "s@example.com", "pw", is_staff=True, is_superuser=True)


@pytest.fixture
def api(staff: User) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff).key}")
    return client


# --- the API (DRF) -------------------------------------------------------------------------------
def test_validation_errors_are_field_by_field(api: APIClient) -> None:
    error = envelope(api.post("/api/test/drf/", {"count": 0}, format="json"), 400, "invalid")
    assert set(error["details"]) == {"name", "count"}
    assert error["details"]["name"] == ["This field is required."]


def test_401_and_403(staff: User) -> None:
    anonymous = APIClient().get("/api/v1/dead-letters/")
    envelope(anonymous, 401, "not_authenticated")
    assert anonymous["WWW-Authenticate"] == "Token"
    plain = User.objects.create_user("pat", "p@example.com", "pw")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=plain).key}")
    envelope(client.get("/api/v1/dead-letters/"), 403, "permission_denied")


def test_404_405_and_unknown_api_paths(api: APIClient) -> None:
    envelope(api.get("/api/v1/dead-letters/999999/"), 404, "not_found")
    envelope(api.delete("/api/v1/breakers/"), 405, "method_not_allowed")
    envelope(api.get("/api/v1/no-such-thing/"), 404, "not_found")  # the API's own catch-all
    envelope(api.get("/api/v2/anything/"), 404, "not_found")  # Django's handler404, JSON route
    envelope(Client().get("/webhooks/unknown/"), 404, "not_found")


def test_integrity_error_is_409(api: APIClient) -> None:
    envelope(api.get("/api/test/drf/?kind=integrity"), 409, "conflict")


def test_database_unavailable_is_503_with_retry_after(api: APIClient) -> None:
    response = api.get("/api/test/drf/?kind=operational")
    envelope(response, 503, "database_unavailable")
    assert int(response["Retry-After"]) > 0


def test_any_other_exception_is_500_internal_without_internals_logged_once(
    api: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    response = api.get("/api/test/drf/?kind=runtime")
    error = envelope(response, 500, "internal")
    assert error["message"] == "Internal error."
    logged = records_of(caplog, response["X-Request-ID"])
    assert len(logged) == 1, [r.getMessage() for r in logged]
    (record,) = logged
    assert record.levelno == logging.ERROR
    assert record.name == "django.request"
    # the traceback is for us (the masking filter renders it into exc_text), not for the client
    assert "RuntimeError" in (record.exc_text or "")
    # Django did not log it a second time ("Internal Server Error: ...")
    assert not [r for r in caplog.records if r.getMessage().startswith("Internal Server Error")]


def test_client_errors_are_logged_once_as_warnings(api: APIClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    response = api.get("/api/v1/dead-letters/999999/")
    (record,) = records_of(caplog, response["X-Request-ID"])
    assert record.levelno == logging.WARNING
    assert "404 not_found" in record.getMessage()
    assert not [r for r in caplog.records if r.getMessage().startswith("Not Found")]


def test_429_has_retry_after_and_the_envelope(api: APIClient, settings: Any) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"reliability_read": "1/min", "reliability_write": "1/min"},
    }
    assert api.get("/api/v1/breakers/").status_code == 200
    response = api.get("/api/v1/breakers/")
    envelope(response, 429, "throttled")
    assert 0 < int(response["Retry-After"]) <= 60


# --- Django's handlers on JSON routes, HTML elsewhere -----------------------------------------------
@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("runtime", 500, "internal"),
        ("operational", 503, "database_unavailable"),
        ("integrity", 409, "conflict"),
    ],
)
def test_django_errors_on_json_routes_are_the_envelope_logged_once(
    kind: str, status: int, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    response = Client(raise_request_exception=False).get(f"/api/test/django/?kind={kind}")
    envelope(response, status, code)
    if status == 503:
        assert response["Retry-After"]
    assert len(records_of(caplog, response["X-Request-ID"])) == 1


def test_html_pages_keep_html_error_pages(staff: User) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(staff)
    admin_404 = client.get("/admin/no-such-page/")
    assert admin_404.status_code == 404
    assert admin_404["Content-Type"].startswith("text/html")
    page_500 = client.get("/pages/test/django/")
    assert page_500.status_code == 500
    assert page_500["Content-Type"].startswith("text/html")
    assert SECRET not in page_500.content.decode()


# --- the webhook and the degradation middleware --------------------------------------------------
def test_webhook_401_and_503(webhook_client: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    HotelFactory.create()
    envelope(
        APIClient().post(WEBHOOK, payloads.incoming_text(id_message="A"), format="json"),
        401,
        "authentication_failed",
    )

    from django.db import OperationalError

    def database_down(**kwargs: Any) -> None:
        raise OperationalError(SECRET)

    monkeypatch.setattr("messaging.api.views.notification_ingest", database_down)
    response = webhook_client.post(WEBHOOK, payloads.incoming_text(id_message="B"), format="json")
    envelope(response, 503, "database_unavailable")
    assert response["Retry-After"] == "30"


def test_degradation_refusal_is_the_envelope_logged_once(
    webhook_client: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    HotelFactory.create()
    caplog.set_level(logging.INFO)
    degradation.degradation_override_set(
        level="minor", reason="test", switches_off=(Switch.WEBHOOK_INTAKE,), actor=None, via="api"
    )
    response = webhook_client.post(WEBHOOK, payloads.incoming_text(id_message="P"), format="json")
    envelope(response, 503, "intake_paused")
    assert response["Retry-After"]
    (record,) = records_of(caplog, response["X-Request-ID"])
    assert record.levelno == logging.WARNING  # an expected refusal: no ADMINS mail per request
    assert not Message.objects.filter(provider_message_id="P").exists()
