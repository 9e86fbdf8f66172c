"""Who sees what on the health URLs: public probes answer only a status; every detailed page needs a
staff login or the monitoring token and tells anyone else nothing (issue 16, item 7)."""

from __future__ import annotations

import asyncio

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import Client
from prometheus_client import REGISTRY

from reliability import degradation, health
from tests.factories import HotelFactory

TOKEN = "monitoring-token-for-tests-0123456789"
DETAILED = [
    "/health/",
    "/health/detailed/",
    "/health/circuit-breakers/",
    "/health/degradation/",
    "/health/dlq/",
]


@pytest.fixture(autouse=True)
def _fresh_health_with_the_monitoring_token(fresh_health: None, settings) -> None:
    settings.HEALTH_MONITORING_TOKEN = TOKEN
    settings.HEALTH_CHECK_TIMEOUT = 3.0  # about access, not deadlines


@pytest.fixture
def hotel_world(db) -> str:
    """A hotel whose name and Green API instance id must never reach an anonymous caller."""
    hotel = HotelFactory.create(name="Secret Palace Hotel", green_api_instance_id="7103999888")
    return str(hotel.green_api_instance_id)


def _secrets(settings) -> list[str]:
    """What an anonymous answer must not name: the hotel, its instance id, database and broker hosts."""
    from urllib.parse import urlsplit

    db = settings.DATABASES["default"]
    names = ["Secret Palace Hotel", "7103999888", str(db.get("HOST") or "")]
    names.append(str(db.get("NAME", "")).rsplit("/", 1)[-1])
    names.append(urlsplit(str(settings.CELERY_BROKER_URL)).hostname or "")
    return [n for n in names if len(n) > 3]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("path", DETAILED)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_AUTHORIZATION": "Bearer wrong-token"},
        {"HTTP_AUTHORIZATION": f"Token {TOKEN}"},  # the right secret under another scheme
        {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}x"},
    ],
    ids=["anonymous", "wrong-token", "wrong-scheme", "longer-token"],
)
def test_detailed_pages_refuse_anyone_without_staff_login_or_token(
    path: str, headers: dict[str, str], hotel_world: str, settings
) -> None:
    response = Client().get(path, HTTP_ACCEPT="application/json", **headers)  # type: ignore[arg-type]
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "not_authenticated"
    text = response.content.decode()
    for secret in _secrets(settings):
        assert secret not in text


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_unset_token_opens_nothing(settings, hotel_world: str) -> None:
    settings.HEALTH_MONITORING_TOKEN = ""
    for headers in ({"HTTP_AUTHORIZATION": "Bearer "}, {"HTTP_AUTHORIZATION": "Bearer"}):
        assert Client().get("/health/", **headers).status_code == 401  # type: ignore[arg-type]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("accept", ["application/json", "text/html", "text/plain", "*/*"])
def test_public_probes_answer_only_a_status_in_any_format(accept: str, hotel_world: str, settings) -> None:
    for path in ("/health/live/", "/health/ready/", "/health/ready/?format=text"):
        response = Client().get(path, HTTP_ACCEPT=accept)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        for secret in _secrets(settings):
            assert secret not in response.content.decode()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("path", DETAILED)
def test_the_monitoring_token_and_a_staff_login_open_every_detailed_page(path: str, hotel_world: str) -> None:
    by_token = Client().get(path, HTTP_ACCEPT="application/json", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert by_token.status_code in (200, 503), by_token.content
    assert "error" not in by_token.json()
    staff = User.objects.create_user("desk", "desk@example.com", "pw", is_staff=True)
    client = Client()
    client.force_login(staff)
    by_login = client.get(path, HTTP_ACCEPT="application/json")
    assert by_login.status_code in (200, 503)
    assert by_login.json().keys() == by_token.json().keys()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_logged_in_user_who_is_not_staff_is_refused() -> None:
    guest_user = User.objects.create_user("someone", "someone@example.com", "pw")
    client = Client()
    client.force_login(guest_user)
    assert client.get("/health/", HTTP_ACCEPT="application/json").status_code == 401
    assert client.get("/health/dlq/").status_code == 401


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_detail_names_the_hotel_and_instance_only_to_monitoring(
    hotel_world: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from messaging.clients import green_api

    monkeypatch.setattr(green_api.GreenApiClient, "get_state_instance", lambda self, **_: "notAuthorized")
    body = (
        Client().get("/health/", HTTP_ACCEPT="application/json", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").json()
    )
    assert "Secret Palace Hotel" in body["checks"]["green_api_instances"]["message"]
    assert hotel_world in body["checks"]["green_api_instances"]["message"]
    anonymous = Client().get("/health/", HTTP_ACCEPT="application/json")
    assert "Secret Palace Hotel" not in anonymous.content.decode()


def _broken_database(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: BaseDatabaseWrapper) -> None:
        raise OperationalError("connection refused (test)")

    monkeypatch.setattr(BaseDatabaseWrapper, "ensure_connection", refuse)


def test_the_token_opens_the_detail_while_the_database_is_down_and_it_answers_503(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _broken_database(monkeypatch)
    response = Client().get("/health/", HTTP_ACCEPT="application/json", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 503  # not django-health-check's 500
    assert response.json()["status"] == "failing"
    assert response.json()["checks"]["database"]["status"] == "failing"
    text = Client().get("/health/?format=text", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert text.status_code == 503
    ready = Client().get("/health/ready/")
    assert (ready.status_code, ready.json()) == (503, {"status": "failing"})


def _run(checks: list[health.TimedCheck]) -> dict[str, object]:
    results = [asyncio.run(check.get_result()) for check in checks]
    return health.describe(results)


def test_a_provider_outage_is_degraded_200_never_503(monkeypatch: pytest.MonkeyPatch) -> None:
    """Green API / DeepSeek down, Redis and the broker away: guests are still answered (canned
    answers, parked replies, database fallbacks), so /health/ stays 200 'degraded'."""

    def down() -> str:
        raise health.ServiceUnavailable("provider down")

    from messaging import health as messaging_health

    monkeypatch.setattr(messaging_health, "green_api_instances", down)
    monkeypatch.setattr(messaging_health, "deepseek_reachable", down)
    checks = [c for c in health.all_checks() if c.name in {"green_api_instances", "deepseek"}]
    checks += [health.RedisCheck(url="redis://127.0.0.1:1/0"), health.BrokerCheck()]
    assert {c.name for c in checks} >= {"green_api_instances", "deepseek", "redis"}
    monkeypatch.setattr(health, "all_checks", lambda: checks)
    response = Client().get("/health/", HTTP_ACCEPT="application/json", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    body = response.json()
    assert body["checks"]["green_api_instances"]["status"] == "failing"
    assert body["checks"]["deepseek"]["status"] == "failing"
    assert body["checks"]["redis"]["status"] == "failing"
    assert (response.status_code, body["status"]) == (200, "degraded")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_intake_switched_off_fails_the_basic_check_with_503() -> None:
    ops = User.objects.create_superuser("ops", "ops@example.com", "pw")
    degradation.degradation_override_set(
        level="critical", reason="incident", actor=ops, via="admin", switches_off=["webhook_intake"]
    )
    response = Client().get("/health/", HTTP_ACCEPT="application/json", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 503
    assert response.json()["checks"]["degradation"]["status"] == "failing"
    assert "webhook_intake" in response.json()["checks"]["degradation"]["message"]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_health_check_total_counts_each_run_by_status(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> str:
        raise health.ServiceUnavailable("down")

    def value(check: str, status: str) -> float:
        return REGISTRY.get_sample_value("health_check_total", {"check": check, "status": status}) or 0.0

    before = (value("database", "success"), value("f", "failure"))
    monkeypatch.setattr(
        health, "all_checks", lambda: [health.DatabaseCheck(), health.FunctionCheck(label="f", fn=fail)]
    )
    Client().get("/health/", HTTP_ACCEPT="application/json", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert value("database", "success") - before[0] == 1
    assert value("f", "failure") - before[1] == 1
