"""Read and write throttles of the reliability API per client, counted by the server-side limiter
(per process on the embedded default, Redis with services: this module runs in both)."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from prometheus_client import REGISTRY

from tests.console.api.support import World, client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def low_rates(settings: Any) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"reliability_read": "3/min", "reliability_write": "2/min"},
    }


def test_reads_are_limited_per_user_with_the_envelope_and_retry_after(
    api_world: World, low_rates: None
) -> None:
    store = "redis" if settings.RATE_LIMIT_REDIS_URL else "memory"
    sample = "hotelbot_inbound_rate_limit_total"
    labels = {"scope": "reliability_read", "outcome": "limited", "store": store}
    before = REGISTRY.get_sample_value(sample, labels) or 0.0
    client = client_for(api_world.staff_a)
    for _ in range(3):
        assert client.get("/api/v1/dead-letters/").status_code == 200
    response = client.get(f"/api/v1/dead-letters/{api_world.letter_a.pk}/")
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "throttled"
    assert error["request_id"] == response["X-Request-ID"]
    # "3/min": 3 at once, then one every 20 s
    assert 0 < int(response["Retry-After"]) <= 20
    # counted by the server-side limiter in the configured store (Redis with services)
    assert REGISTRY.get_sample_value(sample, labels) == before + 1
    # another user has a budget of their own
    assert client_for(api_world.staff_b).get("/api/v1/dead-letters/").status_code == 200


def test_writes_have_their_own_budget(api_world: World, low_rates: None) -> None:
    client = client_for(api_world.ops)
    for _ in range(3):
        client.get("/api/v1/breakers/")
    assert client.get("/api/v1/breakers/").status_code == 429  # reads used up
    url = "/api/v1/breakers/green_api/force-close/"
    assert [client.post(url, {}, format="json").status_code for _ in range(3)] == [200, 200, 429]
