"""Redis dies mid-run (a private redis-server, SIGKILLed) and comes back on the same port.

pybreaker's Redis storage never opens while Redis is down; here the fallback (the database store
when one is configured, shared by every process; else per process) must still open, the outage
must be logged once, Redis must not be hammered on every call, and the
shared state must catch up with what the process learnt once Redis is back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from bench.scratch_db import scratch_alias
from reliability.breaker import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, State, TransitionEvent
from reliability.breaker.stores.database import DatabaseBreakerStore
from reliability.breaker.stores.redis import RedisBreakerStore, RedisStoreOptions
from tests.reliability.conftest import ThrowawayRedis, read_hash

pytestmark = pytest.mark.redis

RECONNECT = 0.2  # the store retries Redis every 0.2-0.4 s in these tests
SYNC = 0.55  # just past the stores' sync interval: a cached view is refreshed on the next call


class CountingRedis(redis.Redis):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attempts = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.attempts += 1
        return super().execute_command(*args, **options)


def store_on(server: ThrowawayRedis) -> tuple[RedisBreakerStore, CountingRedis]:
    client = CountingRedis(
        port=server.port, socket_timeout=0.25, socket_connect_timeout=0.25, retry=Retry(NoBackoff(), 0)
    )
    return RedisBreakerStore(client, RedisStoreOptions(prefix="outage", reconnect_interval=RECONNECT)), client


def boom() -> None:
    raise TimeoutError("provider timed out")


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(TimeoutError):
            breaker.call(boom)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def warnings(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == logging.WARNING]


@pytest.fixture
def store_log() -> Iterator[Records]:
    """Records of the store's logger (attached directly: project logging may not propagate)."""
    handler = Records()
    log = logging.getLogger("reliability.breaker.stores.redis")
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield handler
    log.removeHandler(handler)
    log.setLevel(old_level)


def wait_until_reconnect_is_due() -> None:
    time.sleep(2 * RECONNECT + 0.05)


def test_fallback_opens_while_redis_is_down_then_the_shared_state_catches_up(
    throwaway_redis: ThrowawayRedis, store_log: Records
) -> None:
    store, client = store_on(throwaway_redis)
    breaker = CircuitBreaker(
        "provider", CircuitBreakerConfig(failure_threshold=3, recovery_timeout=30), store
    )
    events: list[TransitionEvent] = []
    breaker.add_listener(events.append)
    fail(breaker)  # recorded in Redis

    throwaway_redis.kill()
    fail(breaker, 2)  # third consecutive failure: the per-process breaker opens
    assert breaker.state is State.OPEN
    assert events[-1].to_state is State.OPEN
    assert events[-1].source == "fallback"
    attempts_before = client.attempts
    started = time.monotonic()
    called = []
    for _ in range(500):
        with pytest.raises(CircuitOpenError) as info:
            breaker.call(lambda: called.append(1))
        assert 29 < info.value.retry_after <= 30
    assert called == []
    elapsed = time.monotonic() - started
    assert client.attempts - attempts_before <= 2 + elapsed / RECONNECT  # not one attempt per call
    assert len(store_log.warnings()) == 1
    assert "Redis unreachable" in store_log.warnings()[0]

    throwaway_redis.start()  # same port, empty: no persistence
    wait_until_reconnect_is_due()
    assert breaker.state is State.OPEN
    assert not breaker._backend.using_fallback  # type: ignore[attr-defined]
    assert (events[-1].source, events[-1].reason) == ("redis", "fallback_open_reconciled")
    other, _ = store_on(throwaway_redis)  # another process, which never saw the failures
    with pytest.raises(CircuitOpenError) as info:
        CircuitBreaker("provider", CircuitBreakerConfig(failure_threshold=3), other).call(lambda: None)
    assert 28 < info.value.retry_after <= 30
    assert len(store_log.warnings()) == 1
    assert any("reachable again" in r.getMessage() for r in store_log.records)


def test_counts_recorded_during_the_outage_are_pushed_when_redis_returns(
    throwaway_redis: ThrowawayRedis, store_log: Records
) -> None:
    store, _ = store_on(throwaway_redis)
    config = CircuitBreakerConfig(failure_threshold=5)
    breaker = CircuitBreaker("provider", config, store)
    breaker.call(lambda: None)  # buffered in the process, never reaches this Redis
    throwaway_redis.kill()
    for _ in range(3):
        breaker.call(lambda: None)
    fail(breaker, 2)
    assert breaker.state is State.CLOSED
    assert breaker.snapshot().source == "fallback"

    throwaway_redis.start()
    wait_until_reconnect_is_due()
    breaker.call(lambda: None)  # reconciles, then this success is buffered
    assert not breaker._backend.using_fallback  # type: ignore[attr-defined]
    shared = read_hash(throwaway_redis.client(), store.key("provider"))
    assert (shared["st"], shared["wt"], shared["wf"], shared["cf"]) == ("closed", "6", "2", "2")
    fail(breaker, 3)  # 2 (from the outage) + 3 consecutive failures: the shared breaker opens
    assert breaker.state is State.OPEN


def test_a_staff_command_given_during_the_outage_is_replayed(
    throwaway_redis: ThrowawayRedis, store_log: Records
) -> None:
    store, _ = store_on(throwaway_redis)
    breaker = CircuitBreaker("provider", CircuitBreakerConfig(), store)
    breaker.call(lambda: None)
    throwaway_redis.kill()
    breaker.force_open("provider maintenance")
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: None)
    assert any("only until Redis is back" in message for message in store_log.warnings())

    throwaway_redis.start()
    wait_until_reconnect_is_due()
    assert breaker.state is State.FORCED_OPEN
    other, _ = store_on(throwaway_redis)
    assert CircuitBreaker("provider", CircuitBreakerConfig(), other).state is State.FORCED_OPEN


# -- Redis -> database -> process ------------------------------------------------------------------


@pytest.fixture
def database_alias(tmp_path: Path, django_db_blocker: Any) -> Iterator[str]:
    """A scratch SQLite database (WAL, IMMEDIATE) holding the breaker-state table."""
    with django_db_blocker.unblock(), scratch_alias("sqlite", tmp_path) as alias:
        yield alias


def process_on(server: ThrowawayRedis, alias: str) -> tuple[RedisBreakerStore, DatabaseBreakerStore]:
    """One process's stores: Redis, with the database store as its fallback."""
    client = redis.Redis(
        port=server.port, socket_timeout=0.25, socket_connect_timeout=0.25, retry=Retry(NoBackoff(), 0)
    )
    options = RedisStoreOptions(prefix="outage", reconnect_interval=RECONNECT)
    database = DatabaseBreakerStore(alias, options)
    return RedisBreakerStore(client, options, fallback=database), database


def row(alias: str) -> dict[str, Any]:
    from reliability.models import BreakerState

    return dict(json.loads(BreakerState.objects.using(alias).get(name="provider").data))


def test_while_redis_is_down_processes_share_the_database_store_and_redis_inherits_its_state(
    throwaway_redis: ThrowawayRedis, database_alias: str, store_log: Records
) -> None:
    config = CircuitBreakerConfig(failure_threshold=3, recovery_timeout=30)
    store_a, _ = process_on(throwaway_redis, database_alias)
    store_b, _ = process_on(throwaway_redis, database_alias)
    a = CircuitBreaker("provider", config, store_a)
    b = CircuitBreaker("provider", config, store_b)
    events: list[TransitionEvent] = []
    a.add_listener(events.append)
    b.add_listener(events.append)
    fail(a)  # recorded in Redis
    b.call(lambda: None)  # b knows the shared state too
    b.flush()

    throwaway_redis.kill()
    fail(a, 2)  # a's Redis view (1 failure) is adopted by the database, + 2: the shared breaker opens
    assert a.state is State.OPEN
    assert a._backend.using_fallback  # type: ignore[attr-defined]
    assert [(e.to_state, e.source) for e in events] == [(State.OPEN, "database")]
    assert row(database_alias)["st"] == "open"
    called = []
    time.sleep(SYNC)  # b's cached view (closed) is stale now: its next call looks at the store
    with pytest.raises(CircuitOpenError) as info:  # b never saw a failure: per process it would admit
        b.call(lambda: called.append(1))
    assert called == []
    assert 28 < info.value.retry_after <= 30
    assert b.snapshot().source == "database"
    assert next(m for m in store_log.warnings() if "Redis unreachable" in m).endswith(
        "breakers run on the database store until it answers again (retrying every 0.2-0.4 s)"
    )

    throwaway_redis.start()  # same port, empty: no persistence
    wait_until_reconnect_is_due()
    for breaker in (a, b):
        with pytest.raises(CircuitOpenError):
            breaker.call(lambda: called.append(1))
        assert not breaker._backend.using_fallback  # type: ignore[attr-defined]
        assert breaker.snapshot().source == "redis"
    shared = read_hash(throwaway_redis.client(), store_a.key("provider"))
    assert shared["st"] == "open"
    assert 28_000 < int(shared["ou"]) - time.time() * 1000 <= 30_000
    assert (events[-1].source, events[-1].reason) == ("redis", "fallback_open_reconciled")
    assert called == []


def test_the_database_window_is_handed_to_redis_once_however_many_processes_reconcile(
    throwaway_redis: ThrowawayRedis, database_alias: str, store_log: Records
) -> None:
    config = CircuitBreakerConfig(failure_threshold=5)
    stores = [process_on(throwaway_redis, database_alias)[0] for _ in range(3)]
    breakers = [CircuitBreaker("provider", config, store) for store in stores]
    for breaker in breakers:
        breaker.call(lambda: None)
        breaker.flush()
    throwaway_redis.kill()
    for breaker in breakers:
        breaker.call(lambda: None)  # three successes, one per process, in the database
        breaker.flush()
    fail(breakers[0], 2)
    state = row(database_alias)
    assert (state["st"], state["wt"], state["wf"], state["cf"]) == ("closed", 5, 2, 2)

    throwaway_redis.start()
    wait_until_reconnect_is_due()
    for breaker in breakers:
        breaker.flush()  # each process reconciles
        assert not breaker._backend.using_fallback  # type: ignore[attr-defined]
    shared = read_hash(throwaway_redis.client(), stores[0].key("provider"))
    assert (shared["st"], shared["wt"], shared["wf"]) == ("closed", "5", "2")


def test_a_staff_command_during_the_outage_reaches_every_process_through_the_database(
    throwaway_redis: ThrowawayRedis, database_alias: str, store_log: Records
) -> None:
    store_a, _ = process_on(throwaway_redis, database_alias)
    store_b, _ = process_on(throwaway_redis, database_alias)
    a = CircuitBreaker("provider", CircuitBreakerConfig(), store_a)
    b = CircuitBreaker("provider", CircuitBreakerConfig(), store_b)
    a.call(lambda: None)
    b.call(lambda: None)
    throwaway_redis.kill()
    a.force_open("provider maintenance")
    assert any("applied on the database store until Redis is back" in m for m in store_log.warnings())
    time.sleep(SYNC)
    with pytest.raises(CircuitOpenError):
        b.call(lambda: None)
    assert b.state is State.FORCED_OPEN

    throwaway_redis.start()
    wait_until_reconnect_is_due()
    assert b.state is State.FORCED_OPEN
    assert a.state is State.FORCED_OPEN
    assert read_hash(throwaway_redis.client(), store_a.key("provider"))["st"] == "forced_open"


def test_with_redis_and_the_database_down_a_process_still_opens_on_its_own(
    throwaway_redis: ThrowawayRedis, tmp_path: Path, django_db_blocker: Any, store_log: Records
) -> None:
    with django_db_blocker.unblock(), scratch_alias("sqlite", tmp_path) as alias:
        store, database = process_on(throwaway_redis, alias)
        breaker = CircuitBreaker("provider", CircuitBreakerConfig(failure_threshold=2), store)
        events: list[TransitionEvent] = []
        breaker.add_listener(events.append)
        breaker.call(lambda: None)
        throwaway_redis.kill()
        from django.db import connections

        connections[alias].close()
        (tmp_path / f"{alias}.sqlite3").unlink()  # the database is gone too
        (tmp_path / f"{alias}.sqlite3").mkdir()  # ... and cannot be recreated
        fail(breaker, 2)
        assert breaker.state is State.OPEN
        assert events[-1].source == "fallback"  # the last resort: per process
        assert database.is_down
