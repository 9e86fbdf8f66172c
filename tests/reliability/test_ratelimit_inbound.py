"""Server-side rate limits (reliability.ratelimit.admit): the API per client, the webhook per Green
API instance; Redis-backed, and still limiting per process while Redis is down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from messaging.models import Message
from reliability import ratelimit, testing
from reliability.ratelimit import MemorySlots, Rate, RateLimiter, admit
from tests.console.api import support as api_support
from tests.console.api.support import World, client_for
from tests.factories import HotelFactory
from tests.messaging import payloads
from tests.reliability.conftest import FakeClock, ThrowawayRedis

WEBHOOK = "/webhooks/green-api/"
api_world = api_support.api_world
_fresh_throttle_counts = api_support.fresh_throttle_counts


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The inbound limiter on a per-process store whose clock the test moves."""
    clock = FakeClock()
    monkeypatch.setattr(ratelimit._inbound, "limiter", RateLimiter([MemorySlots(clock=clock)]))
    monkeypatch.setattr(ratelimit._inbound, "pid", __import__("os").getpid())
    monkeypatch.setattr(ratelimit, "_leases", ratelimit._Leases(clock=clock))
    return clock


# --- rates ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "burst", "expected"),
    [
        ("600/min", None, Rate(10.0, 600)),
        ("100/s", 200, Rate(100.0, 200)),
        ("5/hour", None, Rate(5 / 3600, 5)),
        ("1000/day", 10, Rate(1000 / 86400, 10)),
        ("off", None, None),
        ("", None, None),
        ("0/s", None, None),
    ],
)
def test_rates_parse_drf_syntax(text: str, burst: int | None, expected: Rate | None) -> None:
    assert Rate.parse(text, burst=burst) == expected


@pytest.mark.parametrize("text", ["ten/s", "10/fortnight", "10"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid rate"):
        Rate.parse(text)


# --- the algorithm (per process store, fake clock) -----------------------------------------------------
def test_burst_at_once_then_the_rate(fake_clock: FakeClock, settings: Any) -> None:
    settings.RATE_LIMIT_REDIS_URL = ""
    rate = Rate(per_second=2.0, burst=3)
    assert [admit(scope="t", client="c", rate=rate).allowed for _ in range(4)] == [True, True, True, False]
    denied = admit(scope="t", client="c", rate=rate)
    assert (denied.allowed, denied.store) == (False, "memory")
    assert denied.retry_after == pytest.approx(0.5)  # the next slot, minus the burst tolerance
    assert admit(scope="t", client="other", rate=rate).allowed  # per client
    fake_clock.advance(0.5)
    assert admit(scope="t", client="c", rate=rate).allowed  # one slot freed every 1/rate
    assert not admit(scope="t", client="c", rate=rate).allowed


def test_sustained_rate_above_the_limit_is_limited_below_it_never(
    fake_clock: FakeClock, settings: Any
) -> None:
    settings.RATE_LIMIT_REDIS_URL = ""
    rate = Rate.parse(settings.WEBHOOK_RATE_LIMIT, burst=settings.WEBHOOK_RATE_BURST)
    for _ in range(50 * 60):  # a minute of Green API's normal 50/s
        assert admit(scope="webhook", client="1101000001", rate=rate).allowed
        fake_clock.advance(1 / 50)
    outcomes = []
    for _ in range(150 * 10):  # ten seconds at 150/s: the burst goes, then a third are refused
        outcomes.append(admit(scope="webhook", client="1101000002", rate=rate).allowed)
        fake_clock.advance(1 / 150)
    assert 0 < outcomes.count(False) < len(outcomes) / 2
    assert all(outcomes[:200])


# --- leases: one store call per n requests, never more than the limit ---------------------------------
class CountingSlots(MemorySlots):
    def __init__(self, *, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.calls = 0

    def reserve(self, key: str, interval: float, max_wait: float, count: int = 1) -> Any:
        self.calls += 1
        return super().reserve(key, interval, max_wait, count)


@pytest.fixture
def counting_store(fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch, settings: Any) -> CountingSlots:
    settings.RATE_LIMIT_REDIS_URL = ""
    store = CountingSlots(clock=fake_clock)
    monkeypatch.setattr(ratelimit._inbound, "limiter", RateLimiter([store]))
    return store


def test_a_lease_admits_n_requests_per_store_call(
    counting_store: CountingSlots, fake_clock: FakeClock
) -> None:
    rate = Rate(per_second=100.0, burst=200)
    admitted = []
    for _ in range(50):
        admitted.append(admit(scope="webhook", client="1", rate=rate, lease=10).allowed)
        fake_clock.advance(0.02)  # 50/s: well inside the limit
    assert all(admitted)
    assert counting_store.calls == 5


def test_a_lease_never_admits_more_than_the_burst_then_the_rate(
    counting_store: CountingSlots, fake_clock: FakeClock
) -> None:
    rate = Rate(per_second=2.0, burst=3)
    # the store grants only the slots within the burst tolerance (3 of the 10 asked for)
    assert [admit(scope="t", client="c", rate=rate, lease=10).allowed for _ in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    fake_clock.advance(0.5)
    assert [admit(scope="t", client="c", rate=rate, lease=10).allowed for _ in range(2)] == [True, False]
    # the same sequence as without leases (test_burst_at_once_then_the_rate)


def test_held_slots_lapse_with_the_span_they_were_reserved_for(
    counting_store: CountingSlots, fake_clock: FakeClock
) -> None:
    rate = Rate(per_second=10.0, burst=100)
    assert admit(scope="t", client="c", rate=rate, lease=10).allowed  # reserves 10 slots: 1 s of them
    assert counting_store.calls == 1
    fake_clock.advance(ratelimit.LEASE_LAPSE)  # the 9 held slots lapsed (they would add to a new burst)
    assert admit(scope="t", client="c", rate=rate, lease=10).allowed
    assert counting_store.calls == 2


def test_redis_reserves_as_many_slots_as_fit(throwaway_redis: ThrowawayRedis) -> None:
    store = ratelimit.RedisSlots.from_url(throwaway_redis.url, prefix="test:lease")
    first = store.reserve("k", 0.1, 0.25, count=10)  # slots 0, 0.1, 0.2 are within 0.25 s
    assert (first.granted, first.count) == (True, 3)
    denied = store.reserve("k", 0.1, 0.25, count=10)
    assert (denied.granted, denied.count) == (False, 0)
    assert denied.wait == pytest.approx(0.3, abs=0.05)
    single = store.reserve("other", 0.1, 0.25)
    assert (single.granted, single.count) == (True, 1)


def test_memory_store_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    store = MemorySlots(clock=clock)
    monkeypatch.setattr(MemorySlots, "PRUNE_AT", 100)
    store._prune_at = 100
    for i in range(1000):
        store.reserve(f"ip:{i}", 0.1, 1.0)
        clock.advance(0.2)  # each client's slot is in the past by the next one
    assert len(store._next) <= 101


# --- the webhook ----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_webhook_at_green_apis_normal_rate_is_never_limited(
    webhook_client: Any, fake_clock: FakeClock
) -> None:
    HotelFactory.create()
    allowed = sample("hotelbot_inbound_rate_limit_total", scope="webhook", outcome="allowed", store="memory")
    statuses = []
    for i in range(150):  # 3 s at 50/s (the clock is the limiter's, moved by hand: no timing)
        body = payloads.incoming_text(id_message=f"N{i}")
        statuses.append(webhook_client.post(WEBHOOK, body, format="json").status_code)
        fake_clock.advance(1 / 50)
    assert statuses == [200] * 150
    # every one went through the limiter (the one on the hand-moved clock)
    assert (
        sample("hotelbot_inbound_rate_limit_total", scope="webhook", outcome="allowed", store="memory")
        == allowed + 150
    )
    assert Message.objects.filter(direction="in").count() == 150


@pytest.mark.django_db
def test_webhook_is_limited_per_instance_with_429_and_nothing_stored(
    webhook_client: Any, settings: Any
) -> None:
    """Runs on the configured store (per process, or Redis with services)."""
    HotelFactory.create()
    settings.WEBHOOK_RATE_LIMIT, settings.WEBHOOK_RATE_BURST = "1/min", 2
    store = "redis" if settings.RATE_LIMIT_REDIS_URL else "memory"
    limited_before = sample(
        "hotelbot_inbound_rate_limit_total", scope="webhook", outcome="limited", store=store
    )
    first = [
        webhook_client.post(WEBHOOK, payloads.incoming_text(id_message=f"L{i}"), format="json")
        for i in range(2)
    ]
    assert [r.status_code for r in first] == [200, 200]
    refused = webhook_client.post(WEBHOOK, payloads.incoming_text(id_message="L2"), format="json")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "throttled"
    assert refused.json()["error"]["request_id"] == refused["X-Request-ID"]
    assert 0 < int(refused["Retry-After"]) <= 60
    assert not Message.objects.filter(provider_message_id="L2").exists()  # Green API redelivers it
    after = sample("hotelbot_inbound_rate_limit_total", scope="webhook", outcome="limited", store=store)
    assert after == limited_before + 1
    # another instance has its own budget (it is not a known hotel: quarantined, still 200)
    other = webhook_client.post(
        WEBHOOK,
        payloads.incoming_text(id_message="O1")
        | {"instanceData": {"idInstance": 1101000099, "wid": "x@c.us", "typeInstance": "whatsapp"}},
        format="json",
    )
    assert other.status_code == 200


# --- the API, Redis killed and back ----------------------------------------------------------------------
@pytest.fixture
def api_on_throwaway_redis(
    throwaway_redis: ThrowawayRedis, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ThrowawayRedis]:
    settings.RATE_LIMIT_REDIS_URL = throwaway_redis.url
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"reliability_read": "3/min", "reliability_write": "3/min"},
    }
    monkeypatch.setattr(ratelimit, "RETRY_STORE_AFTER", 0.2)  # ask Redis again soon after it failed
    testing.reset_rate_limits()
    yield throwaway_redis
    testing.reset_rate_limits()


def _reads(client: Any, n: int) -> list[int]:
    return [client.get("/api/v1/dead-letters/").status_code for _ in range(n)]


@pytest.mark.django_db
def test_api_keeps_limiting_while_redis_is_down_and_returns_to_redis(
    api_world: World, api_on_throwaway_redis: ThrowawayRedis
) -> None:
    server = api_on_throwaway_redis
    client = client_for(api_world.staff_a)
    limited = {"scope": "reliability_read", "outcome": "limited"}
    redis_limited = sample("hotelbot_inbound_rate_limit_total", **limited, store="redis")
    memory_limited = sample("hotelbot_inbound_rate_limit_total", **limited, store="memory")
    fallback = sample("fallback_usage_total", dependency="redis", fallback="process_rate_limit")

    # Redis up: counted in Redis
    assert _reads(client, 4) == [200, 200, 200, 429]
    assert sample("hotelbot_inbound_rate_limit_total", **limited, store="redis") == redis_limited + 1
    assert any(True for _ in server.client().scan_iter(match="test:rl:*:in:*"))

    # Redis killed: the process keeps limiting on its own (a fresh budget, then 429 again)
    server.kill()
    assert _reads(client, 4) == [200, 200, 200, 429]
    assert sample("hotelbot_inbound_rate_limit_total", **limited, store="memory") == memory_limited + 1
    assert sample("fallback_usage_total", dependency="redis", fallback="process_rate_limit") >= fallback + 4

    # Redis back (empty: no persistence): asked again after RETRY_STORE_AFTER, counted there again
    server.start()
    time.sleep(0.3)
    assert _reads(client, 4) == [200, 200, 200, 429]
    assert sample("hotelbot_inbound_rate_limit_total", **limited, store="redis") == redis_limited + 2
    assert any(True for _ in server.client().scan_iter(match="test:rl:*:in:*"))


@pytest.mark.django_db
def test_anonymous_api_calls_are_limited_per_ip(settings: Any) -> None:
    from rest_framework.test import APIClient

    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"reliability_read": "2/min", "reliability_write": "2/min"},
    }
    here, there = APIClient(REMOTE_ADDR="198.51.100.7"), APIClient(REMOTE_ADDR="198.51.100.8")
    assert [here.get("/api/v1/no-such-path/").status_code for _ in range(3)] == [404, 404, 429]
    assert there.get("/api/v1/no-such-path/").status_code == 404  # another address, its own budget
