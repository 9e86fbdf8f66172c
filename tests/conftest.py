from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from rest_framework.test import APIClient


def pytest_report_header() -> list[str]:
    from django.conf import settings

    db = settings.DATABASES["default"]
    return [
        f"hotelbot: database={db['ENGINE'].rsplit('.', 1)[-1]} cache={settings.CACHES['default']['BACKEND']} "
        f"broker={settings.CELERY_BROKER_URL.split('://')[0]} "
        f"require_services={os.environ.get('REQUIRE_SERVICES', '0')}"
    ]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every transactional test (``transaction=True``, ``live_server``) restores the migrations'
    rows when it ends (serialized rollback). Without it, its flush re-creates content types under
    new ids and drops the seeded breakers, and the next serialized test fails to restore them."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        transactional = (marker is not None and marker.kwargs.get("transaction")) or any(
            name in getattr(item, "fixturenames", ()) for name in ("transactional_db", "live_server")
        )
        if transactional:
            kwargs = {**(marker.kwargs if marker is not None else {}), "transaction": True}
            kwargs["serialized_rollback"] = True
            item.add_marker(pytest.mark.django_db(**kwargs), append=False)


TEST_WEBHOOK_TOKEN = "test-webhook-token"


@pytest.fixture
def webhook_client() -> APIClient:
    from django.conf import settings

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {settings.GREEN_API_WEBHOOK_TOKEN}")
    return client


@pytest.fixture(autouse=True)
def _isolated_reliability_state(settings) -> Iterator[None]:
    """Each test starts with fresh in-process breakers and retry budgets (tests of the shared stores
    build their own or turn BREAKER_DB_STORE back on). Breaker events stay queued; tests call
    write_pending_events() to check them."""
    import uuid

    from messaging.services import webhook_auth
    from reliability import database_breaker, degradation, ratelimit
    from reliability.breaker import registry
    from reliability.retry import reset_retry_registry

    # The global webhook token is an opt-in (empty by default); most tests post with it through
    # webhook_client. Per-hotel tokens have their own tests (tests/messaging/test_webhook_credentials.py).
    settings.GREEN_API_WEBHOOK_TOKEN = TEST_WEBHOOK_TOKEN
    webhook_auth.reset_for_tests()
    # pytest-django runs with DEBUG off: encrypted fields use the key a DEBUG process (the e2e
    # stacks' subprocesses) falls back to, unless the environment configures one (docs/secrets.md).
    if not settings.FIELD_ENCRYPTION_KEYS:
        from reliability.crypto import DEV_KEY

        settings.FIELD_ENCRYPTION_KEYS = [DEV_KEY]
    settings.BREAKER_EVENT_WRITER = False
    settings.BREAKER_REDIS_URL = ""
    settings.BREAKER_DB_STORE = False
    # A test sees the webhook's publish on its own thread (and its in-memory SQLite database); the
    # hand-off thread has tests of its own, and the e2e stacks and the drill run the default (on).
    settings.CELERY_REQUEST_PUBLISH_HANDOFF = False
    settings.RATE_LIMIT_REDIS_PREFIX = f"test:rl:{uuid.uuid4().hex[:12]}"  # pacing slots per test
    registry.reset_for_tests()
    reset_retry_registry()
    ratelimit.reset_for_tests()
    degradation.reset_for_tests()
    database_breaker.reset_for_tests()
    yield
    database_breaker.reset_for_tests()
    registry.reset_for_tests()
    reset_retry_registry()
    ratelimit.reset_for_tests()
    degradation.reset_for_tests()
