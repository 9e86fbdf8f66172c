"""The Redis-backed breaker against a real Redis (several stores in one process stand in for
several processes; the multi-process suite does it for real)."""

from __future__ import annotations

import collections
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability.breaker import (
    BreakerStateMachine,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    Outcome,
    State,
    TransitionEvent,
)
from reliability.breaker.stores.redis import (
    RedisBreakerStore,
    RedisStoreOptions,
    _config_args,
    encode_runs,
    runs_of,
)
from tests.reliability.conftest import FakeClock, read_hash

pytestmark = pytest.mark.redis


class CountingRedis(redis.Redis):
    """A client that counts the commands it sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: collections.Counter[str] = collections.Counter()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent[str(args[0]).upper()] += 1
        return super().execute_command(*args, **options)


def store_for(redis_url: str, prefix: str, **options: Any) -> RedisBreakerStore:
    return RedisBreakerStore.from_url(redis_url, RedisStoreOptions(prefix=prefix, **options))


def breaker_on(store: RedisBreakerStore, name: str = "dep", **config: Any) -> CircuitBreaker:
    return CircuitBreaker(name, CircuitBreakerConfig(**config), store)


def boom() -> None:
    raise ConnectionError("connection refused")


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(ConnectionError):
            breaker.call(boom)


def shared(redis_client: redis.Redis, store: RedisBreakerStore, name: str = "dep") -> dict[str, str]:
    return read_hash(redis_client, store.key(name))


def test_failures_from_several_processes_add_up_and_the_trip_is_seen_by_all(
    redis_url: str, key_prefix: str
) -> None:
    a = breaker_on(store_for(redis_url, key_prefix, sync_interval=0.05), failure_threshold=4)
    b = breaker_on(store_for(redis_url, key_prefix, sync_interval=0.05), failure_threshold=4)
    fail(a, 2)
    fail(b, 2)
    assert b.state is State.OPEN
    time.sleep(0.06)
    called = []
    with pytest.raises(CircuitOpenError) as info:
        a.call(lambda: called.append(1))
    assert called == []
    assert 59 < info.value.retry_after <= 60
    assert not a._backend.using_fallback  # type: ignore[attr-defined]


def test_rejections_while_open_and_successes_in_closed_cost_almost_no_commands(
    redis_url: str, key_prefix: str
) -> None:
    """pybreaker's Redis storage does two or more round trips per call; this must not."""
    client = CountingRedis(connection_pool=redis.ConnectionPool.from_url(redis_url, socket_timeout=1))
    store = RedisBreakerStore(client, RedisStoreOptions(prefix=key_prefix))
    breaker = breaker_on(store, failure_threshold=1)
    breaker.call(lambda: None)  # first call: one sync
    client.sent.clear()
    for _ in range(2_000):
        breaker.call(lambda: None)
    assert sum(client.sent.values()) <= 2_000 / store.options.flush_every + 5
    fail(breaker)
    client.sent.clear()
    for _ in range(2_000):
        with pytest.raises(CircuitOpenError):
            breaker.call(lambda: None)
    assert sum(client.sent.values()) == 0


def test_paced_successes_ride_the_refresh_and_a_failure_carries_them_first(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    """docs/cost.md: a worker calls each provider a few times a second; a success then costs no
    script of its own, only the refresh every ``sync_interval`` carries the ones buffered."""
    client = CountingRedis(connection_pool=redis.ConnectionPool.from_url(redis_url, socket_timeout=1))
    store = RedisBreakerStore(client, RedisStoreOptions(prefix=key_prefix))
    assert store.options.flush_interval == store.options.sync_interval
    breaker = breaker_on(store, failure_threshold=3)
    breaker.call(lambda: None)  # first call: one sync
    client.sent.clear()
    for _ in range(10):  # 5 calls a second for 2 s
        time.sleep(0.2)
        breaker.call(lambda: None)
    # one record script per refresh interval (0.5 s), not one per call
    assert client.sent["EVALSHA"] <= 5, client.sent
    sent = int(shared(redis_client, store)["wt"])
    assert sent < 11  # some successes still wait in the process
    fail(breaker)  # a failure goes at once, after the successes buffered before it
    state = shared(redis_client, store)
    assert (state["wt"], state["wf"], state["cf"]) == ("12", "1", "1")


def test_a_failure_reaches_redis_at_once_and_successes_are_batched(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    store = store_for(redis_url, key_prefix, flush_interval=0.1)
    breaker = breaker_on(store, failure_threshold=10)
    fail(breaker)
    assert shared(redis_client, store)["cf"] == "1"
    for _ in range(5):
        breaker.call(lambda: None)
    assert shared(redis_client, store)["wt"] == "1"  # the 5 successes wait in the process
    time.sleep(0.11)
    breaker.call(lambda: None)  # the oldest buffered outcome is old enough: flushed
    state = shared(redis_client, store)
    assert (state["wt"], state["wf"], state["cf"]) == ("7", "1", "0")
    breaker.call(lambda: None)
    breaker.flush()
    assert shared(redis_client, store)["wt"] == "8"


def test_half_open_probe_is_a_lease_granted_to_one_process(redis_url: str, key_prefix: str) -> None:
    config: dict[str, Any] = {"failure_threshold": 1, "recovery_timeout": 0.2, "success_threshold": 1}
    a = breaker_on(store_for(redis_url, key_prefix), **config)
    b = breaker_on(store_for(redis_url, key_prefix), **config)
    fail(a)
    time.sleep(0.21)
    probe = a._backend.acquire()
    assert probe.token is not None
    with pytest.raises(CircuitOpenError) as info:
        b.call(lambda: None)
    assert info.value.state is State.HALF_OPEN
    a._backend.record(probe, Outcome.SUCCESS, 0.01)
    assert a.state is State.CLOSED
    time.sleep(0.11)  # b was told to keep away for probe_poll_interval
    assert b.call(lambda: "ok") == "ok"


def test_an_overdue_probe_reopens_the_breaker(redis_url: str, key_prefix: str) -> None:
    config: dict[str, Any] = {"failure_threshold": 1, "recovery_timeout": 0.1, "half_open_max_wait": 0.2}
    a = breaker_on(store_for(redis_url, key_prefix), **config)
    b = breaker_on(store_for(redis_url, key_prefix), **config)
    events: list[TransitionEvent] = []
    b.add_listener(events.append)
    fail(a)
    time.sleep(0.11)
    a._backend.acquire()  # a probe that never reports (its process hung or died)
    time.sleep(0.21)
    with pytest.raises(CircuitOpenError):
        b.call(lambda: None)
    assert [(e.from_state, e.to_state, e.reason) for e in events] == [
        (State.HALF_OPEN, State.OPEN, "probe_timeout")
    ]


def test_each_transition_is_reported_once_cluster_wide(redis_url: str, key_prefix: str) -> None:
    a = breaker_on(store_for(redis_url, key_prefix, sync_interval=0.05), failure_threshold=2)
    b = breaker_on(store_for(redis_url, key_prefix, sync_interval=0.05), failure_threshold=2)
    seen_a: list[TransitionEvent] = []
    seen_b: list[TransitionEvent] = []
    a.add_listener(seen_a.append)
    b.add_listener(seen_b.append)
    fail(b)
    fail(a)
    time.sleep(0.06)
    assert b.state is State.OPEN
    assert [(e.to_state, e.reason, e.source) for e in seen_a] == [
        (State.OPEN, "consecutive_failures", "redis")
    ]
    assert seen_b == []
    event = seen_a[0]
    assert event.failure_rate == 100.0
    assert event.open_until is not None
    assert event.open_until - event.at == pytest.approx(60.0, abs=0.01)
    assert abs(event.at - time.time()) < 5  # Redis server time


def test_staff_commands_reach_every_process(redis_url: str, key_prefix: str) -> None:
    a = breaker_on(store_for(redis_url, key_prefix, sync_interval=0.05), failure_threshold=1)
    b = breaker_on(store_for(redis_url, key_prefix, sync_interval=0.05), failure_threshold=1)
    a.force_open("maintenance", until=datetime.now(UTC) + timedelta(seconds=30))
    time.sleep(0.06)
    with pytest.raises(CircuitOpenError) as info:
        b.call(lambda: None)
    assert info.value.state is State.FORCED_OPEN
    assert 29 < info.value.retry_after <= 30
    a.disable()
    time.sleep(0.06)
    fail(b, 3)
    assert b.state is State.DISABLED
    a.metrics_only()
    time.sleep(0.06)
    fail(b, 3)
    assert b.state is State.METRICS_ONLY
    a.reset()
    time.sleep(0.06)
    fail(b)
    assert a.state is State.OPEN


def test_a_config_change_with_a_new_window_shape_empties_the_shared_window(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    store = store_for(redis_url, key_prefix)
    breaker = breaker_on(store, failure_threshold=0, window_size=10, minimum_requests=10)
    fail(breaker, 3)
    assert shared(redis_client, store)["wf"] == "3"
    breaker.update_config(breaker.config.with_changes(window_type="time", window_size=30))
    breaker.flush()
    state = shared(redis_client, store)
    assert (state["wk"], state["wt"], state["wf"]) == ("time:30", "0", "0")
    fail(breaker, 2)
    assert shared(redis_client, store)["wf"] == "2"


def test_time_window_in_redis_ages_out(redis_url: str, key_prefix: str) -> None:
    store = store_for(redis_url, key_prefix)
    breaker = breaker_on(store, failure_threshold=0, window_type="time", window_size=1, minimum_requests=50)
    fail(breaker, 3)
    assert breaker.snapshot().calls == 3
    time.sleep(1.1)
    snap = breaker.snapshot()
    assert (snap.calls, snap.failures) == (0, 0)


def test_state_lost_by_redis_is_restored_by_a_process_that_saw_it_open(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    a = breaker_on(
        store_for(redis_url, key_prefix, sync_interval=0.05), failure_threshold=1, recovery_timeout=30
    )
    fail(a)
    redis_client.delete(a.store.key("dep"))  # type: ignore[attr-defined] # a restart without persistence
    time.sleep(0.06)
    assert a.state is State.OPEN  # the sync noticed the new incarnation and pushed the open state
    b = breaker_on(store_for(redis_url, key_prefix), failure_threshold=1, recovery_timeout=30)
    with pytest.raises(CircuitOpenError) as info:
        b.call(lambda: None)
    assert 29 < info.value.retry_after <= 30


def test_no_lock_is_held_around_calls(redis_url: str, key_prefix: str) -> None:
    """8 threads x 20 ms calls must run at once: all are inside the call together (barrier)."""
    breaker = breaker_on(store_for(redis_url, key_prefix))
    breaker.call(lambda: None)
    inside = threading.Barrier(8, timeout=10)
    spans: list[tuple[float, float]] = []

    def work() -> None:
        start = time.monotonic()
        inside.wait()
        time.sleep(0.02)
        spans.append((start, time.monotonic()))

    threads = [threading.Thread(target=breaker.call, args=(work,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(spans) == 8
    assert max(start for start, _ in spans) < min(end for _, end in spans)


def test_store_options_are_validated() -> None:
    with pytest.raises(ValueError, match="flush_every"):
        RedisStoreOptions(flush_every=0)
    with pytest.raises(ValueError, match="prefix"):
        RedisStoreOptions(prefix="has space")
    with pytest.raises(ValueError, match="sync_interval"):
        RedisStoreOptions(sync_interval=0)


# -- the Lua scripts follow the same rules as the pure state machine -------------------------------

outcome_codes = st.lists(st.sampled_from([1, 1, 1, 2, 2, 3, 4]), min_size=1, max_size=60)


@st.composite
def lua_cases(draw: st.DrawFn) -> tuple[CircuitBreakerConfig, list[list[int]], bool]:
    window_type: Literal["count", "time"] = draw(st.sampled_from(["count", "time"]))
    size = draw(st.integers(1, 12))
    config = CircuitBreakerConfig(
        failure_threshold=draw(st.integers(0, 6)),
        window_size=size,
        window_type=window_type,
        minimum_requests=draw(st.integers(1, size)),
        failure_rate_threshold=draw(st.sampled_from([30.0, 50.0, 100.0])),
        slow_call_rate_threshold=draw(st.sampled_from([50.0, 100.0])),
        slow_call_duration=1.0,
    )
    # count windows: several batches; time windows: one batch (one Redis TIME, one bucket)
    batches = draw(st.lists(outcome_codes, min_size=1, max_size=4 if window_type == "count" else 1))
    return config, batches, draw(st.booleans())


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=lua_cases())
def test_lua_scripts_apply_outcomes_exactly_like_the_state_machine(
    redis_url: str, key_prefix: str, redis_client: redis.Redis, case: tuple[CircuitBreakerConfig, Any, bool]
) -> None:
    config, batches, metrics_only = case
    store = store_for(redis_url, key_prefix)
    key = store.key("lua")
    redis_client.delete(key)
    args = _config_args(config, store.options)
    seen: list[TransitionEvent] = []
    machine = BreakerStateMachine("lua", config, clock=FakeClock(), listener=seen.append)
    if metrics_only:
        machine.metrics_only("m")
        store.run("command", key, (*args, "metrics_only", "m", "-1"))
    reply = store.run("record", key, (*args, "", "-2", "", "-1"))
    reasons: list[str] = []
    for batch in batches:
        reply = store.run(
            "record", key, (*args, reply.inc, str(reply.epoch), encode_runs(runs_of(batch)), "-1")
        )
        reasons += [event[2] for event in reply.events]
        machine.replay(batch)
    snap = machine.snapshot()
    assert reply.state is snap.state
    assert (reply.calls, reply.failures, reply.slow, reply.consecutive, reply.trips) == (
        snap.calls,
        snap.failures,
        snap.slow_calls,
        snap.consecutive_failures,
        snap.trips,
    )
    assert reasons == [e.reason for e in seen if e.reason != "m"]
    redis_client.delete(key)


@pytest.mark.parametrize(
    ("window_size", "batches", "expected"),
    [
        # A would-trip starts a fresh window; later successes (Lua: success_run; machine: the
        # lock-free on_success path) must be checked against it, not against the old full window.
        (2, [[1], [3, 3], [1, 1, 1]], (2, 2, 0, 0)),
        (4, [[1], [3, 3, 3, 3, 3], [1, 1]], (2, 0, 0, 0)),
        (2, [[1, 3, 3, 1, 1, 1]], (2, 2, 0, 0)),
    ],
)
def test_metrics_only_successes_after_a_would_trip_count_in_a_fresh_window(
    redis_url: str,
    key_prefix: str,
    redis_client: redis.Redis,
    window_size: int,
    batches: list[list[int]],
    expected: tuple[int, int, int, int],
) -> None:
    """(would-trips, calls, failures, slow) agree between Lua and the machine's fast path."""
    config = CircuitBreakerConfig(
        failure_threshold=0,
        window_size=window_size,
        minimum_requests=window_size,
        failure_rate_threshold=25.0,
        slow_call_rate_threshold=50.0,
        slow_call_duration=1.0,
    )
    store = store_for(redis_url, key_prefix)
    key = store.key("mo-fresh")
    redis_client.delete(key)
    args = _config_args(config, store.options)
    store.run("command", key, (*args, "metrics_only", "m", "-1"))
    reply = store.run("record", key, (*args, "", "-2", "", "-1"))
    seen: list[TransitionEvent] = []
    machine = BreakerStateMachine("mo-fresh", config, clock=FakeClock(), listener=seen.append)
    machine.metrics_only("m")
    lua_reasons: list[str] = []
    for batch in batches:
        reply = store.run(
            "record", key, (*args, reply.inc, str(reply.epoch), encode_runs(runs_of(batch)), "-1")
        )
        lua_reasons += [event[2] for event in reply.events]
        for code in batch:
            permit, duration = machine.acquire(), (1.0 if code >= 3 else 0.0)
            if code & 1:
                machine.on_success(permit, duration)
            else:
                machine.record(permit, Outcome.FAILURE, duration)
    snap = machine.snapshot()
    machine_reasons = [e.reason for e in seen if e.reason != "m"]
    assert lua_reasons == machine_reasons == ["would_trip:slow_call_rate"] * expected[0]
    assert reply.state is snap.state is State.METRICS_ONLY
    assert (reply.calls, reply.failures, reply.slow) == expected[1:]
    assert (snap.calls, snap.failures, snap.slow_calls) == expected[1:]
    redis_client.delete(key)
