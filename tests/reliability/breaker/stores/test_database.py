"""The database store wired into Django: the store without Redis, the one entry point, admin.

The multi-process behaviour (exact probes, no lost counts, a trip seen everywhere within 1 s) is in
``test_multiprocess.py``; the Redis -> database fallback in ``test_redis_outage.py`` (both beside this file).
"""

from __future__ import annotations

import re
import time

import pytest
from django.db import connections, transaction

from reliability import testing
from reliability.breaker import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    State,
    TransitionEvent,
    get_circuit_breaker,
    registry,
)
from reliability.breaker.stores.database import DatabaseBreakerStore
from reliability.breaker.stores.redis import RedisBreakerStore, RedisStoreOptions
from reliability.models import BreakerState

# The breaker alias is its own connection: tests that use it must not run inside the default
# connection's test transaction, and must put back the rows the migrations seeded.
shared_db = pytest.mark.django_db(
    transaction=True, serialized_rollback=True, databases=["default", "breaker"]
)


def boom() -> None:
    raise ConnectionError("down")


def fail(cb: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(ConnectionError):
            cb.call(boom)


def test_store_order_follows_settings(settings) -> None:
    settings.BREAKER_DB_STORE = True
    testing.reset_breakers()
    store = registry.store()
    assert isinstance(store, DatabaseBreakerStore)
    assert store.using == settings.BREAKER_DB_ALIAS == "breaker"

    settings.BREAKER_REDIS_URL = "redis://127.0.0.1:1/0"  # never contacted: stores connect on use
    testing.reset_breakers()
    store = registry.store()
    assert isinstance(store, RedisBreakerStore)
    assert isinstance(store.fallback, DatabaseBreakerStore)


def test_the_public_call_returns_the_shared_breaker_of_the_registry(settings) -> None:
    settings.BREAKER_DB_STORE = True
    testing.reset_breakers()
    cb = get_circuit_breaker("payments", CircuitBreakerConfig(failure_threshold=2))
    assert cb.store is registry.store()
    assert isinstance(cb.store, DatabaseBreakerStore)
    assert get_circuit_breaker("payments") is cb


@shared_db
def test_admin_live_state_shows_what_another_process_decided(settings, admin_client) -> None:
    settings.BREAKER_DB_STORE = True
    settings.BREAKER_EVENT_WRITER = False
    testing.reset_breakers()
    assert registry.breaker("green_api").state is State.CLOSED  # this (web) process never calls it
    worker = CircuitBreaker(  # a worker process: its own store object on the same database
        "green_api", CircuitBreakerConfig(failure_threshold=5), DatabaseBreakerStore("breaker")
    )
    fail(worker, 5)
    assert worker.state is State.OPEN
    assert BreakerState.objects.using("breaker").get(name="green_api").state == "open"

    page = admin_client.get("/admin/reliability/breakerconfig/").content.decode()
    row = next(r for r in re.findall(r"<tr.*?</tr>", page, re.S) if ">green_api<" in r)
    assert re.search(r"open \(retry in \d+s\)", row), row
    with pytest.raises(CircuitOpenError):
        registry.breaker("green_api").call(lambda: "never runs")
    rows = admin_client.get("/admin/reliability/breakerstate/").content.decode()
    assert re.search(r">green_api<.*?>open<", rows, re.S)


@shared_db
def test_a_trip_survives_the_callers_rollback(settings) -> None:
    settings.BREAKER_EVENT_WRITER = False
    store = DatabaseBreakerStore("breaker", RedisStoreOptions(reconnect_interval=0.1))
    cb = CircuitBreaker("deepseek", CircuitBreakerConfig(failure_threshold=2), store)
    events: list[TransitionEvent] = []
    cb.add_listener(events.append)

    def caller() -> None:
        with transaction.atomic():  # the caller's transaction fails after the provider calls
            fail(cb, 2)
            raise RuntimeError("caller rolls back")

    with pytest.raises(RuntimeError):
        caller()
    assert cb.state is State.OPEN
    assert [e.to_state for e in events] == [State.OPEN]
    # PostgreSQL: committed on the breaker's own connection at once. SQLite: the caller held the
    # only write lock, so the process decided alone and hands the trip over on the next retry.
    time.sleep(0.25)
    assert cb.state is State.OPEN
    row = BreakerState.objects.using("breaker").get(name="deepseek")
    assert row.state == "open"
    assert not cb._backend.using_fallback  # type: ignore[attr-defined]


@shared_db
def test_a_decision_never_nests_in_a_transaction_on_its_own_alias(settings, caplog) -> None:
    store = DatabaseBreakerStore("breaker")
    cb = CircuitBreaker("deepseek", CircuitBreakerConfig(failure_threshold=1), store)
    with transaction.atomic(using="breaker"):
        fail(cb, 1)  # refused by the durable transaction: this process stands in
    assert store.is_down
    assert cb.state is State.OPEN
    assert cb.snapshot().source == "fallback"
    assert any("database answered with an error" in r.getMessage() for r in caplog.records)
    assert not BreakerState.objects.using("breaker").filter(name="deepseek", state="open").exists()
    connections["breaker"].close()
