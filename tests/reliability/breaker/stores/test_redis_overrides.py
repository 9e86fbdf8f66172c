"""Timed staff overrides end on time, a force-open outlives the loss of the shared state, and a
transition a process infers after Redis lost the state is reported (once)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from reliability.breaker import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    InMemoryStore,
    State,
    TransitionEvent,
)
from reliability.breaker.stores.redis import INFERRED_LOST, RedisBreakerStore, RedisStoreOptions
from tests.reliability.conftest import FakeClock, ThrowawayRedis, read_hash


def local(clock: FakeClock, **changes: Any) -> tuple[CircuitBreaker, list[TransitionEvent]]:
    breaker = CircuitBreaker(
        "dep", CircuitBreakerConfig(**changes), InMemoryStore(clock=clock, wall_clock=clock)
    )
    events: list[TransitionEvent] = []
    breaker.add_listener(events.append)
    return breaker, events


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def boom() -> None:
    raise ConnectionError("down")


# --- in process, fake clock -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "state"), [("disable", State.DISABLED), ("metrics_only", State.METRICS_ONLY)]
)
def test_a_timed_disable_or_metrics_only_ends_on_time(clock: FakeClock, mode: str, state: State) -> None:
    breaker, events = local(clock, failure_threshold=2)
    getattr(breaker, mode)("noisy provider", until=soon(30))
    breaker.call(boom_ok)
    assert breaker.state is state
    clock.advance(29)
    assert breaker.state is state
    clock.advance(2)
    assert breaker.state is State.CLOSED  # nobody called: reading the state ends it
    assert (events[-1].from_state, events[-1].to_state, events[-1].reason) == (
        state,
        State.CLOSED,
        f"{state.value}_expired",
    )
    assert events[0].open_until is not None  # the override's event says when it ends
    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(boom)
    assert breaker.state is State.OPEN  # the state machine is back in charge


def boom_ok() -> str:
    return "ok"


def test_a_timed_disable_ends_at_the_next_call_too(clock: FakeClock) -> None:
    breaker, events = local(clock, failure_threshold=1)
    breaker.disable("x", until=soon(10))
    clock.advance(11)
    with pytest.raises(ConnectionError):
        breaker.call(boom)  # admitted as CLOSED, recorded, trips
    assert [e.to_state for e in events] == [State.DISABLED, State.CLOSED, State.OPEN]


def test_a_timed_force_open_shows_its_end_without_any_call(clock: FakeClock) -> None:
    breaker, events = local(clock)
    breaker.force_open("maintenance", until=soon(30))
    clock.advance(31)
    snap = breaker.snapshot()
    assert snap.state is State.HALF_OPEN  # not FORCED_OPEN with retry_after=0 until a call comes
    assert events[-1].reason == "forced_open_expired"


# --- shared store on a throwaway Redis ------------------------------------------------------------


def store(server: ThrowawayRedis, **options: Any) -> RedisBreakerStore:
    opts = RedisStoreOptions(prefix="ovr", sync_interval=0.05, **options)
    return RedisBreakerStore(redis.Redis(port=server.port, socket_timeout=1), opts)


def shared(st: RedisBreakerStore, **changes: Any) -> tuple[CircuitBreaker, list[TransitionEvent]]:
    breaker = CircuitBreaker("dep", CircuitBreakerConfig(**changes), st)
    events: list[TransitionEvent] = []
    breaker.add_listener(events.append)
    return breaker, events


@pytest.mark.redis
@pytest.mark.parametrize(
    ("mode", "state"), [("disable", State.DISABLED), ("metrics_only", State.METRICS_ONLY)]
)
def test_a_timed_override_ends_on_time_in_every_process(
    throwaway_redis: ThrowawayRedis, mode: str, state: State
) -> None:
    a, a_events = shared(store(throwaway_redis))
    b, b_events = shared(store(throwaway_redis))
    getattr(a, mode)("drill", until=soon(0.4))
    assert b.state is state
    time.sleep(0.5)
    assert b.state is State.CLOSED
    assert a.state is State.CLOSED
    ended = [e for e in a_events + b_events if e.reason == f"{state.value}_expired"]
    assert len(ended) == 1  # decided once, in Redis


@pytest.mark.redis
def test_a_force_open_survives_flushall_and_is_reported(throwaway_redis: ThrowawayRedis) -> None:
    a, a_events = shared(store(throwaway_redis))
    b, b_events = shared(store(throwaway_redis))
    a.force_open("provider maintenance")
    assert b.state is State.FORCED_OPEN
    throwaway_redis.client().flushall()
    time.sleep(0.06)  # past the cache's sync interval
    for breaker in (b, a):
        with pytest.raises(CircuitOpenError):
            breaker.call(boom_ok)
        assert breaker.state is State.FORCED_OPEN
    events = a_events + b_events
    lost = [e for e in events if e.reason == INFERRED_LOST]
    assert len(lost) == 1  # reported once, by the process that noticed first
    assert (lost[0].from_state, lost[0].to_state) == (State.FORCED_OPEN, State.CLOSED)
    reasserted = [e for e in events if "re-asserted" in e.reason]
    assert [(e.from_state, e.to_state) for e in reasserted] == [(State.CLOSED, State.FORCED_OPEN)]
    client = throwaway_redis.client()
    assert read_hash(client, "ovr:{dep}")["st"] == "forced_open"


@pytest.mark.redis
def test_a_forced_open_key_never_expires(throwaway_redis: ThrowawayRedis) -> None:
    a, _ = shared(store(throwaway_redis, key_ttl=0.3))
    a.force_open("long incident")
    client = throwaway_redis.client()
    assert client.pttl("ovr:{dep}") == -1  # no expiry while a staff override holds
    time.sleep(0.4)
    newcomer, _ = shared(store(throwaway_redis, key_ttl=0.3))  # a process started a week later
    with pytest.raises(CircuitOpenError):
        newcomer.call(boom_ok)
    newcomer.force_close("over")
    assert 0 < client.pttl("ovr:{dep}") <= 300  # automatic state expires again


@pytest.mark.redis
def test_an_open_breaker_whose_state_redis_lost_reports_the_inferred_transition(
    throwaway_redis: ThrowawayRedis,
) -> None:
    a, a_events = shared(store(throwaway_redis), failure_threshold=1, recovery_timeout=0.1)
    b, b_events = shared(store(throwaway_redis), failure_threshold=1, recovery_timeout=0.1)
    with pytest.raises(ConnectionError):
        a.call(boom)
    assert b.state is State.OPEN
    time.sleep(0.15)  # the open period is over: nothing to push back
    throwaway_redis.client().flushall()
    assert a.call(boom_ok) == "ok"
    assert b.call(boom_ok) == "ok"
    inferred = [e for e in a_events + b_events if e.reason.startswith("inferred:")]
    assert len(inferred) == 1  # reported once, by the process that noticed first
    assert (inferred[0].from_state, inferred[0].to_state, inferred[0].source) == (
        State.OPEN,
        State.CLOSED,
        "redis",
    )
