from __future__ import annotations

import os

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


@pytest.fixture
def webhook_client() -> APIClient:
    from django.conf import settings

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {settings.GREEN_API_WEBHOOK_TOKEN}")
    return client
