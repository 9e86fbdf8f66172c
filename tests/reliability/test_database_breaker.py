"""The ``database`` breaker in DatabaseBreakerMiddleware: the mapping of database errors
(operational / interface / other) for JSON routes and HTML pages, fail fast while open, the probe,
and what never trips it."""

from __future__ import annotations

import json
from collections.abc import Callable

import psycopg.errors
import pytest
from django.contrib.auth import get_user_model
from django.db import DataError, InterfaceError, OperationalError, ProgrammingError
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory

from messaging.models import Message
from reliability import database_breaker, testing
from reliability.breaker import CircuitBreaker, InMemoryStore, State
from reliability.middleware import DatabaseBreakerMiddleware
from tests.factories import HotelFactory
from tests.messaging import payloads

WEBHOOK = "/webhooks/green-api/"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db_breaker_clock(monkeypatch, settings) -> FakeClock:
    """This process's database breaker on a clock the test moves (5 s open, one failure trips)."""
    settings.DB_BREAKER_FAILURE_THRESHOLD = 1
    settings.DB_BREAKER_RECOVERY_TIMEOUT = 5.0
    fake = FakeClock()
    cb = CircuitBreaker(database_breaker.NAME, database_breaker.config(), InMemoryStore(clock=fake))
    monkeypatch.setattr(database_breaker, "_breaker", cb)
    return fake


def state() -> State:
    return database_breaker.breaker().state


# --- the mapping (unit: process_exception on a bare middleware) -----------------------------------
def _middleware() -> DatabaseBreakerMiddleware:
    return DatabaseBreakerMiddleware(lambda request: HttpResponse("ok"))


def _psycopg(django_cls: type[Exception], cause: Exception) -> Exception:
    exc = django_cls(str(cause))
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (OperationalError("connection refused"), 503, "database_unavailable"),
        (
            _psycopg(OperationalError, psycopg.errors.AdminShutdown("terminating")),
            503,
            "database_unavailable",
        ),
        (InterfaceError("connection already closed"), 503, "database_connection_lost"),
        (_psycopg(OperationalError, psycopg.errors.DeadlockDetected("deadlock")), 503, "database_busy"),
        (ProgrammingError("relation does not exist"), 500, "database_error"),
        (DataError("value too long"), 500, "database_error"),
    ],
)
def test_json_routes_get_the_envelope_for_each_kind(exc: Exception, status: int, code: str) -> None:
    request = RequestFactory().post("/api/v1/breakers/x/reset/")
    response = _middleware().process_exception(request, exc)
    assert response is not None
    assert response.status_code == status
    body = json.loads(response.content)
    assert body["error"]["code"] == code
    assert "relation" not in body["error"]["message"]
    assert "Traceback" not in response.content.decode()
    assert (response.get("Retry-After") == "30") is (status == 503)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (OperationalError("connection refused"), "database_unavailable"),
        (InterfaceError("connection already closed"), "database_connection_lost"),
    ],
)
def test_html_pages_get_the_maintenance_page_for_an_outage(exc: Exception, code: str) -> None:
    response = _middleware().process_exception(RequestFactory().get("/admin/"), exc)
    assert response is not None
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert response["Retry-After"] == "30"
    page = response.content.decode()
    assert "Back in a moment" in page
    assert code in page
    assert 'http-equiv="refresh"' in page


def test_html_pages_keep_djangos_500_for_other_database_errors() -> None:
    request = RequestFactory().get("/admin/")
    assert _middleware().process_exception(request, ProgrammingError("relation does not exist")) is None


def test_other_exceptions_are_not_its_business() -> None:
    assert _middleware().process_exception(RequestFactory().get("/admin/"), ValueError("x")) is None


# --- through the whole stack ----------------------------------------------------------------------
@pytest.mark.django_db
def test_webhook_503_then_fails_fast_then_probes_and_stores(
    webhook_client, db_breaker_clock, monkeypatch
) -> None:
    """The first request meets the outage (503 + Retry-After); later ones never reach the view
    until the open time is over; then a probe succeeds and the request is served."""
    HotelFactory.create()
    from messaging.api import views

    real_ingest = views.notification_ingest
    calls: list[str] = []

    def down(**kwargs: object) -> object:
        calls.append("down")
        raise OperationalError("connection refused")

    monkeypatch.setattr(views, "notification_ingest", down)
    body = payloads.incoming_text(id_message="DURING")
    first = webhook_client.post(WEBHOOK, body, format="json")
    assert first.status_code == 503
    assert first["Retry-After"] == "30"
    assert first.json()["error"]["code"] == "database_unavailable"
    assert state() is State.OPEN

    second = webhook_client.post(WEBHOOK, body, format="json")
    assert second.status_code == 503
    assert second["Retry-After"] == "30"
    assert second.json()["error"] == {
        "request_id": second["X-Request-ID"],
        "code": "database_unavailable",
        "message": "The database is unavailable; retry later.",
        "details": {"breaker": "database", "retry_in": 5},
    }
    assert calls == ["down"]  # the view was not asked again

    monkeypatch.setattr(views, "notification_ingest", real_ingest)
    db_breaker_clock.now += 5.0  # open time over: the next request probes (SELECT 1 answers) and is served
    assert webhook_client.post(WEBHOOK, body, format="json").json() == {"status": "stored"}
    assert state() is State.CLOSED
    assert webhook_client.post(WEBHOOK, body, format="json").json() == {"status": "duplicate"}
    assert Message.objects.filter(provider_message_id="DURING").count() == 1


@pytest.mark.django_db
def test_a_failed_probe_keeps_it_open_and_answers_without_the_view(
    client: Client, db_breaker_clock, monkeypatch
) -> None:
    _trip(client, monkeypatch)
    db_breaker_clock.now += 5.0
    monkeypatch.setattr(database_breaker, "probe", lambda: InterfaceError("connection already closed"))
    response = client.get("/admin/", HTTP_ACCEPT="text/html")
    assert response.status_code == 503
    assert "database_connection_lost" in response.content.decode()
    assert state() is State.OPEN
    db_breaker_clock.now += 1.0
    assert client.get("/admin/").status_code == 503  # open again for a full period: no probe
    assert "database_unavailable" in client.get("/admin/").content.decode()


def _trip(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """An admin request meets the outage (the admin site asks the session and user: patched)."""
    from console.site import OpsAdminSite

    def down(self: object, request: HttpRequest) -> bool:
        raise OperationalError("connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(OpsAdminSite, "has_permission", down)
        response = client.get("/admin/")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert "Back in a moment" in response.content.decode()
    assert state() is State.OPEN


@pytest.mark.django_db
def test_admin_gets_the_maintenance_page_and_liveness_stays_up(
    client: Client, db_breaker_clock, monkeypatch
) -> None:
    _trip(client, monkeypatch)
    page = client.get("/admin/messaging/hotel/")
    assert page.status_code == 503
    assert page["Retry-After"] == "30"
    assert "Back in a moment" in page.content.decode()
    assert client.get("/health/live/").status_code == 200
    ready = client.get("/health/ready/")
    assert ready.status_code == 503
    assert ready.json()["error"]["details"]["breaker"] == "database"


@pytest.mark.django_db
def test_once_closed_admin_works_again(client: Client, db_breaker_clock, monkeypatch) -> None:
    _trip(client, monkeypatch)
    db_breaker_clock.now += 5.0
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    assert client.get("/admin/").status_code == 200
    assert state() is State.CLOSED


@pytest.mark.django_db
def test_busy_and_other_database_errors_never_trip_it(client: Client, db_breaker_clock, monkeypatch) -> None:
    from console.site import OpsAdminSite

    errors: list[Exception] = [
        _psycopg(OperationalError, psycopg.errors.DeadlockDetected("deadlock detected")),
        ProgrammingError("relation does not exist"),
    ]

    def fails(self: object, request: HttpRequest) -> bool:
        raise errors.pop(0)

    monkeypatch.setattr(OpsAdminSite, "has_permission", fails)
    busy = client.get("/admin/")
    assert busy.status_code == 503
    assert "database_busy" in busy.content.decode()
    client.raise_request_exception = False
    assert client.get("/admin/").status_code == 500  # Django's own 500 page: a bug, not an outage
    assert state() is State.CLOSED


class RaisingMiddleware:
    """An inner middleware whose database call fails (like a session save): Django's 500 path."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raise InterfaceError("connection already closed")


@pytest.mark.django_db
def test_a_database_error_in_an_inner_middleware_is_mapped_and_counted(
    client: Client, db_breaker_clock, settings
) -> None:
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}.RaisingMiddleware"]
    client.raise_request_exception = False
    response = client.get("/api/v1/breakers/", HTTP_ACCEPT="application/json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_connection_lost"
    assert state() is State.OPEN


@pytest.mark.django_db
def test_requests_that_never_touch_the_database_do_not_close_it(
    client: Client, db_breaker_clock, monkeypatch
) -> None:
    """In half-open the probe, not the request, decides; a request that needs no database (liveness)
    is not guarded at all."""
    _trip(client, monkeypatch)
    for _ in range(3):
        assert client.get("/health/live/").status_code == 200
    assert state() is State.OPEN


@pytest.mark.django_db
def test_an_outage_met_by_the_degradation_read_is_answered_without_the_view(
    webhook_client, db_breaker_clock, monkeypatch
) -> None:
    """The degradation snapshot is a request's first read: when it meets the outage the request
    is answered 503 at once, instead of waiting another pool timeout in its view."""
    from messaging.api import views
    from reliability import degradation

    calls: list[str] = []
    monkeypatch.setattr(views, "notification_ingest", lambda **kwargs: calls.append("view"))

    def down() -> None:
        raise OperationalError("connection timeout expired")

    testing.reset_degradation()  # due for a refresh
    monkeypatch.setattr(degradation.state, "_read_row", down)
    response = webhook_client.post(WEBHOOK, payloads.incoming_text(id_message="DURING"), format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
    assert calls == []
    assert state() is State.OPEN
    testing.reset_degradation()


@pytest.mark.django_db
def test_readiness_still_answers_with_its_check_when_the_degradation_read_would_fail(
    client: Client, db_breaker_clock, monkeypatch
) -> None:
    """Health paths read no degradation snapshot: their own checks say what is wrong."""
    from reliability import degradation

    reads: list[str] = []

    def down() -> None:
        reads.append("read")
        raise OperationalError("connection timeout expired")

    testing.reset_degradation()  # due for a refresh
    monkeypatch.setattr(degradation.state, "_read_row", down)
    response = client.get("/health/ready/?format=json")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok"}  # public probe: a status only (its database check passed)
    assert reads == []
    testing.reset_degradation()
