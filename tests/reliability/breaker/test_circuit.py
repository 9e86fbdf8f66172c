"""The pure breaker: rules, transitions, classification and the facade, with a fake clock."""

from __future__ import annotations

import asyncio
import logging
import pickle
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reliability.breaker import (
    DEFAULT_FAILURE_STATUSES,
    BreakerStateMachine,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitOpenError,
    InMemoryStore,
    Outcome,
    State,
    TransitionEvent,
    add_global_listener,
    classify,
    get_circuit_breaker,
    open_duration,
    set_default_store,
)
from tests.reliability.conftest import FakeClock


def make(clock: FakeClock, **changes: Any) -> tuple[CircuitBreaker, list[TransitionEvent]]:
    config = CircuitBreakerConfig(**changes)
    breaker = CircuitBreaker("dep", config, InMemoryStore(clock=clock, wall_clock=clock))
    events: list[TransitionEvent] = []
    breaker.add_listener(events.append)
    return breaker, events


def ok() -> str:
    return "ok"


def boom() -> None:
    raise TimeoutError("read timed out")


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(TimeoutError):
            breaker.call(boom)


def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert breaker.call(ok) == "ok"


def slow_call(clock: FakeClock, seconds: float, *, error: bool = False) -> Any:
    def fn() -> str:
        clock.advance(seconds)
        if error:
            raise ConnectionError("reset")
        return "slow"

    return fn


# -- configuration ---------------------------------------------------------------------------------


def test_default_config_is_valid_and_documented_defaults() -> None:
    config = CircuitBreakerConfig()
    assert (config.failure_threshold, config.recovery_timeout, config.success_threshold) == (5, 60.0, 3)
    assert (config.slow_call_duration, config.window_size, config.minimum_requests, config.window_type) == (
        30.0,
        100,
        10,
        "count",
    )
    assert (config.failure_rate_threshold, config.slow_call_rate_threshold) == (50.0, 100.0)
    assert config.half_open_max_calls == 1
    assert config.recovery_timeout_multiplier == 1.0
    assert config.failure_statuses == DEFAULT_FAILURE_STATUSES


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"failure_threshold": -1}, "failure_threshold"),
        ({"failure_threshold": True}, "failure_threshold"),
        ({"failure_threshold": 2.5}, "failure_threshold"),
        ({"recovery_timeout": 0}, "recovery_timeout"),
        ({"recovery_timeout": float("nan")}, "recovery_timeout"),
        ({"success_threshold": 0}, "success_threshold"),
        ({"slow_call_duration": -1.0}, "slow_call_duration"),
        ({"window_size": 0}, "window_size"),
        ({"window_type": "sliding"}, "window_type"),
        ({"window_type": "time", "window_size": 7200}, "window_size"),
        ({"minimum_requests": 0}, "minimum_requests"),
        ({"minimum_requests": 20, "window_size": 10}, "minimum_requests (20) must not exceed window_size"),
        ({"failure_rate_threshold": 0}, "failure_rate_threshold"),
        ({"failure_rate_threshold": 101}, "failure_rate_threshold"),
        ({"slow_call_rate_threshold": -5}, "slow_call_rate_threshold"),
        ({"half_open_max_calls": 0}, "half_open_max_calls"),
        ({"half_open_max_wait": 0}, "half_open_max_wait"),
        ({"recovery_timeout_multiplier": 0.5}, "recovery_timeout_multiplier"),
        ({"max_recovery_timeout": 10, "recovery_timeout": 60}, "max_recovery_timeout (10) must be >="),
        ({"failure_statuses": {200, 700}}, "failure_statuses"),
        ({"failure_exceptions": (ValueError, 3)}, "failure_exceptions"),
        ({"ignored_exceptions": ValueError}, "ignored_exceptions"),
        ({"is_failure": 42}, "is_failure"),
    ],
)
def test_invalid_config_raises_a_clear_value_error(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="invalid CircuitBreakerConfig") as info:
        CircuitBreakerConfig(**changes)
    assert message in str(info.value)


def test_config_reports_every_problem_at_once() -> None:
    with pytest.raises(ValueError, match="failure_threshold") as info:
        CircuitBreakerConfig(failure_threshold=-1, slow_call_duration=0)
    assert "failure_threshold" in str(info.value)
    assert "slow_call_duration" in str(info.value)


def test_time_window_allows_minimum_above_size_in_seconds() -> None:
    config = CircuitBreakerConfig(window_type="time", window_size=10, minimum_requests=50)
    assert config.with_changes(minimum_requests=5).minimum_requests == 5


# -- classification --------------------------------------------------------------------------------


class _Response:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class HTTPError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.response = _Response(status)


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        (200, Outcome.SUCCESS),
        (204, Outcome.SUCCESS),
        (302, Outcome.SUCCESS),
        (400, Outcome.IGNORED),
        (404, Outcome.IGNORED),
        (408, Outcome.IGNORED),
        (429, Outcome.FAILURE),
        (500, Outcome.FAILURE),
        (503, Outcome.FAILURE),
        (TimeoutError(), Outcome.FAILURE),
        (ConnectionError(), Outcome.FAILURE),
        (OSError("network unreachable"), Outcome.FAILURE),
        (HTTPError(503), Outcome.FAILURE),
        (HTTPError(429), Outcome.FAILURE),
        (HTTPError(404), Outcome.IGNORED),
        (RuntimeError("unexpected"), Outcome.FAILURE),
        (KeyboardInterrupt(), Outcome.IGNORED),
        (CircuitOpenError("other", 1.0), Outcome.IGNORED),
    ],
)
def test_default_classification(subject: BaseException | int, expected: Outcome) -> None:
    assert classify(CircuitBreakerConfig(), subject) is expected


def test_configured_exceptions_and_statuses_and_custom_predicate() -> None:
    class Business(Exception):
        pass

    config = CircuitBreakerConfig(
        ignored_exceptions=(Business,),
        failure_exceptions=(HTTPError,),
        failure_statuses=frozenset({503}),
    )
    assert classify(config, Business()) is Outcome.IGNORED
    assert classify(config, HTTPError(404)) is Outcome.FAILURE  # failure_exceptions wins over 4xx
    assert classify(config, 500) is Outcome.SUCCESS  # not in the configured failure statuses
    assert classify(config, 503) is Outcome.FAILURE

    def predicate(subject: BaseException | int) -> Outcome | None:
        if subject == 418:
            return Outcome.FAILURE
        if isinstance(subject, ValueError):
            return Outcome.IGNORED
        return None

    custom = CircuitBreakerConfig(is_failure=predicate)
    assert classify(custom, 418) is Outcome.FAILURE
    assert classify(custom, ValueError()) is Outcome.IGNORED
    assert classify(custom, 503) is Outcome.FAILURE  # None falls back to the defaults


def test_ignored_outcomes_touch_no_counter(clock: FakeClock) -> None:
    breaker, _ = make(clock, failure_threshold=2)

    def not_found() -> None:
        raise HTTPError(404)

    for _ in range(10):
        with pytest.raises(HTTPError):
            breaker.call(not_found)
    snap = breaker.snapshot()
    assert (snap.calls, snap.failures, snap.consecutive_failures, snap.state) == (0, 0, 0, State.CLOSED)


def test_returned_responses_are_classified_by_status(clock: FakeClock) -> None:
    class HttpResponse:  # like reliability.http.HttpResponse
        def __init__(self, status: int) -> None:
            self.status = status

    breaker, _ = make(clock, failure_threshold=2)
    breaker.call(lambda: _Response(503))
    breaker.call(lambda: HttpResponse(404))  # ignored: does not reset the consecutive count
    assert breaker.snapshot().consecutive_failures == 1
    breaker.call(lambda: HttpResponse(500))
    assert breaker.state is State.OPEN


# -- trip rules ------------------------------------------------------------------------------------


def test_trips_on_consecutive_failures_and_a_success_resets_the_count(clock: FakeClock) -> None:
    breaker, events = make(clock, failure_threshold=3, minimum_requests=100, window_size=100)
    fail(breaker, 2)
    succeed(breaker)
    fail(breaker, 2)
    assert breaker.state is State.CLOSED
    fail(breaker)
    assert breaker.state is State.OPEN
    [event] = events
    assert (event.from_state, event.to_state, event.reason) == (
        State.CLOSED,
        State.OPEN,
        "consecutive_failures",
    )
    assert event.failure_rate == pytest.approx(500 / 6)  # 5 of the 6 calls in the window
    assert event.at == clock.now
    assert event.open_until == clock.now + 60.0
    assert event.source == "local"


def test_trips_on_failure_rate_once_the_window_holds_minimum_requests(clock: FakeClock) -> None:
    breaker, events = make(clock, failure_threshold=0, window_size=10, minimum_requests=10)
    for _ in range(4):
        succeed(breaker)
        fail(breaker)
    succeed(breaker)
    assert breaker.state is State.CLOSED  # 4/9 failures, and only 9 calls
    fail(breaker)
    assert breaker.state is State.OPEN  # 5/10 = 50 %
    assert events[-1].reason == "failure_rate"
    assert events[-1].failure_rate == pytest.approx(50.0)


def test_a_success_that_completes_the_minimum_can_trip(clock: FakeClock) -> None:
    breaker, events = make(clock, failure_threshold=0, window_size=20, minimum_requests=10)
    fail(breaker, 9)
    assert breaker.state is State.CLOSED
    succeed(breaker)
    assert breaker.state is State.OPEN
    assert events[-1].failure_rate == pytest.approx(90.0)


def test_count_window_forgets_old_calls(clock: FakeClock) -> None:
    breaker, _ = make(clock, failure_threshold=0, window_size=10, minimum_requests=10)
    fail(breaker, 4)
    succeed(breaker, 200)  # many fast successes (lock-free path) push the failures out
    fail(breaker, 4)
    snap = breaker.snapshot()
    assert (snap.calls, snap.failures, snap.state) == (10, 4, State.CLOSED)


def test_trips_on_slow_call_rate(clock: FakeClock) -> None:
    breaker, events = make(
        clock,
        failure_threshold=0,
        slow_call_duration=1.0,
        slow_call_rate_threshold=50.0,
        window_size=4,
        minimum_requests=4,
    )
    succeed(breaker, 2)
    breaker.call(slow_call(clock, 1.5))
    assert breaker.state is State.CLOSED
    breaker.call(slow_call(clock, 2.0))
    assert breaker.state is State.OPEN
    assert events[-1].reason == "slow_call_rate"
    assert events[-1].slow_call_rate == pytest.approx(50.0)


def test_time_window_counts_only_recent_seconds(clock: FakeClock) -> None:
    breaker, _ = make(clock, failure_threshold=0, window_type="time", window_size=10, minimum_requests=5)
    fail(breaker, 4)
    clock.advance(11)
    succeed(breaker, 4)
    fail(breaker)
    snap = breaker.snapshot()
    assert (snap.calls, snap.failures, snap.state) == (5, 1, State.CLOSED)
    fail(breaker, 3)  # 4/8 recent calls failed
    assert breaker.state is State.OPEN


def test_time_window_ageing_can_trip_on_the_next_call(clock: FakeClock) -> None:
    breaker, _ = make(clock, failure_threshold=0, window_type="time", window_size=10, minimum_requests=4)
    succeed(breaker, 6)
    clock.advance(5)
    fail(breaker, 3)
    assert breaker.state is State.CLOSED  # 3/9
    clock.advance(6)  # the successes age out
    fail(breaker)
    assert breaker.state is State.OPEN  # 4/4


# -- open, half-open, recovery ---------------------------------------------------------------------


def test_open_rejects_without_calling_and_tells_when_to_retry(clock: FakeClock) -> None:
    breaker, _ = make(clock, failure_threshold=1, recovery_timeout=30)
    fail(breaker)
    clock.advance(10)
    called = []
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: called.append(1))
    assert called == []
    assert info.value.name == "dep"
    assert info.value.retry_after == pytest.approx(20.0)
    assert info.value.state is State.OPEN
    assert "retry after 20.000s" in str(info.value)


def test_circuit_open_error_pickles_for_task_queues() -> None:
    error = pickle.loads(pickle.dumps(CircuitOpenError("green_api", 12.5, State.FORCED_OPEN)))  # noqa: S301
    assert (error.name, error.retry_after, error.state) == ("green_api", 12.5, State.FORCED_OPEN)


def test_half_open_admits_the_permitted_probes_and_closes_after_successes(clock: FakeClock) -> None:
    breaker, events = make(
        clock, failure_threshold=1, recovery_timeout=5, half_open_max_calls=2, success_threshold=3
    )
    backend = breaker._backend
    fail(breaker)
    clock.advance(5)
    first, second = backend.acquire(), backend.acquire()
    assert breaker.state is State.HALF_OPEN
    with pytest.raises(CircuitOpenError) as info:
        backend.acquire()
    assert info.value.state is State.HALF_OPEN
    assert 0 < info.value.retry_after <= 1.0
    backend.record(first, Outcome.SUCCESS, 0.0)
    third = backend.acquire()  # a slot was freed
    backend.record(second, Outcome.SUCCESS, 0.0)
    assert breaker.state is State.HALF_OPEN
    backend.record(third, Outcome.SUCCESS, 0.0)
    assert breaker.state is State.CLOSED
    assert [e.reason for e in events] == [
        "consecutive_failures",
        "recovery_timeout_elapsed",
        "probes_succeeded",
    ]


def test_a_failed_probe_reopens_with_a_growing_duration(clock: FakeClock) -> None:
    breaker, events = make(
        clock,
        failure_threshold=1,
        recovery_timeout=10,
        recovery_timeout_multiplier=2.0,
        max_recovery_timeout=35,
        success_threshold=1,
    )
    fail(breaker)
    durations = []
    for _ in range(4):
        durations.append(events[-1].open_until - events[-1].at)  # type: ignore[operator]
        clock.advance(durations[-1])
        fail(breaker)  # the probe fails
        assert breaker.state is State.OPEN
        assert events[-1].reason == "probe_failed"
    assert durations == [10, 20, 35, 35]
    clock.advance(35)
    succeed(breaker)  # the probe succeeds: closed, growth forgotten
    assert breaker.state is State.CLOSED
    fail(breaker)
    assert events[-1].open_until - events[-1].at == 10  # type: ignore[operator]


def test_a_slow_probe_reopens(clock: FakeClock) -> None:
    breaker, events = make(clock, failure_threshold=1, recovery_timeout=1, slow_call_duration=2.0)
    fail(breaker)
    clock.advance(1)
    breaker.call(slow_call(clock, 3.0))
    assert breaker.state is State.OPEN
    assert events[-1].reason == "probe_slow"


def test_an_overdue_probe_reopens_and_its_late_result_is_ignored(clock: FakeClock) -> None:
    breaker, events = make(clock, failure_threshold=1, recovery_timeout=1, half_open_max_wait=5)
    backend = breaker._backend
    fail(breaker)
    clock.advance(1)
    probe = backend.acquire()
    clock.advance(5)
    with pytest.raises(CircuitOpenError):
        backend.acquire()
    assert events[-1].reason == "probe_timeout"
    assert breaker.state is State.OPEN
    backend.record(probe, Outcome.SUCCESS, 5.0)
    assert breaker.state is State.OPEN


def test_an_ignored_probe_frees_its_slot_without_deciding(clock: FakeClock) -> None:
    breaker, _ = make(clock, failure_threshold=1, recovery_timeout=1, success_threshold=1)
    backend = breaker._backend
    fail(breaker)
    clock.advance(1)
    probe = backend.acquire()
    backend.record(probe, Outcome.IGNORED, 0.0)
    assert breaker.state is State.HALF_OPEN
    assert breaker.snapshot().probes_in_flight == 0
    succeed(breaker)
    assert breaker.state is State.CLOSED


def test_a_guard_says_when_it_is_a_probe_and_records_the_outcome_it_is_given(clock: FakeClock) -> None:
    breaker, _ = make(clock, failure_threshold=1, recovery_timeout=1, success_threshold=1)
    with breaker.guard() as guard:
        assert not guard.probe
        guard.record_outcome(Outcome.FAILURE)  # no exception, no status: the caller decided
    assert breaker.state is State.OPEN
    clock.advance(1)
    with breaker.guard() as guard:
        assert guard.probe
        guard.record_outcome(Outcome.IGNORED)  # frees the slot, decides nothing
    assert breaker.state is State.HALF_OPEN

    def mapped_by_the_caller() -> None:
        with breaker.guard() as guard:
            guard.record_outcome(Outcome.SUCCESS)  # wins over the exception
            raise RuntimeError("handled by the caller's own mapping")

    with pytest.raises(RuntimeError):
        mapped_by_the_caller()
    assert breaker.state is State.CLOSED


def test_results_of_calls_admitted_before_a_transition_are_dropped(clock: FakeClock) -> None:
    breaker, _ = make(clock, failure_threshold=2)
    backend = breaker._backend
    late = [backend.acquire() for _ in range(5)]
    fail(breaker, 2)
    assert breaker.state is State.OPEN
    for permit in late:
        backend.record(permit, Outcome.FAILURE, 0.0)
    breaker.reset()
    late_again = backend.acquire()
    breaker.force_close()
    backend.record(late_again, Outcome.FAILURE, 0.0)
    assert breaker.snapshot().failures == 0


def test_open_duration_grows_and_is_capped() -> None:
    config = CircuitBreakerConfig(
        recovery_timeout=2, recovery_timeout_multiplier=3.0, max_recovery_timeout=50
    )
    assert [open_duration(config, n) for n in range(1, 6)] == [2, 6, 18, 50, 50]
    assert open_duration(config, 10_000) == 50
    uncapped = CircuitBreakerConfig(recovery_timeout=2, recovery_timeout_multiplier=100.0)
    assert open_duration(uncapped, 10_000) == 86_400


# -- staff commands --------------------------------------------------------------------------------


def test_force_open_until_a_time_then_probe(clock: FakeClock) -> None:
    breaker, events = make(clock, success_threshold=1)
    breaker.force_open("provider maintenance", until=datetime.now(UTC) + timedelta(seconds=30))
    assert breaker.state is State.FORCED_OPEN
    assert events[-1].reason == "provider maintenance"
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(ok)
    assert info.value.state is State.FORCED_OPEN
    assert 29 < info.value.retry_after <= 30
    clock.advance(31)
    succeed(breaker)  # forced period over: this call was the probe
    assert [e.to_state for e in events[-2:]] == [State.HALF_OPEN, State.CLOSED]


def test_force_open_without_end_and_force_close(clock: FakeClock) -> None:
    breaker, events = make(clock, recovery_timeout=45)
    breaker.force_open("incident")
    clock.advance(10_000)
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(ok)
    assert info.value.retry_after == 45  # no end: the recovery timeout is the hint
    breaker.force_close("incident over")
    assert breaker.state is State.CLOSED
    assert events[-1].reason == "incident over"
    with pytest.raises(ValueError, match="aware"):
        breaker.force_open(until=datetime(2030, 1, 1))


def test_disabled_passes_everything_and_records_nothing(clock: FakeClock) -> None:
    breaker, events = make(clock, failure_threshold=1)
    breaker.disable("noisy provider, breaker off")
    fail(breaker, 20)
    assert breaker.state is State.DISABLED
    assert breaker.snapshot().calls == 0
    breaker.reset()
    assert breaker.state is State.CLOSED
    assert [e.to_state for e in events] == [State.DISABLED, State.CLOSED]


def test_metrics_only_never_rejects_but_reports_would_be_trips(clock: FakeClock) -> None:
    breaker, events = make(clock, failure_threshold=3)
    breaker.metrics_only()
    fail(breaker, 7)
    assert breaker.state is State.METRICS_ONLY
    would = [e for e in events if e.reason.startswith("would_trip")]
    assert [e.reason for e in would] == ["would_trip:consecutive_failures"] * 2
    assert all(e.from_state is e.to_state is State.METRICS_ONLY for e in would)
    assert breaker.snapshot().consecutive_failures == 1  # a fresh window after each report


def test_update_config_applies_at_runtime(clock: FakeClock) -> None:
    breaker, events = make(clock, failure_threshold=0, window_size=20, minimum_requests=10)
    fail(breaker, 4)
    succeed(breaker, 6)
    assert breaker.state is State.CLOSED  # 40 %
    breaker.update_config(breaker.config.with_changes(failure_rate_threshold=40.0))
    assert breaker.state is State.OPEN  # stricter threshold applies at once
    assert events[-1].reason == "failure_rate"
    breaker.reset()
    fail(breaker, 3)
    breaker.update_config(breaker.config.with_changes(window_size=50))  # new shape: fresh window
    assert breaker.snapshot().calls == 0
    not_a_config: Any = {"failure_threshold": 1}
    with pytest.raises(TypeError):
        breaker.update_config(not_a_config)


# -- facade ----------------------------------------------------------------------------------------


def test_decorator_guard_and_async(clock: FakeClock) -> None:
    breaker, _ = make(clock, failure_threshold=3)

    @breaker
    def add(a: int, b: int = 0) -> int:
        return a + b

    @breaker.decorate
    async def fetch(fail_it: bool) -> str:
        await asyncio.sleep(0)
        if fail_it:
            raise ConnectionError("down")
        return "fetched"

    assert add(1, b=2) == 3
    assert add.__name__ == "add"
    assert asyncio.run(fetch(False)) == "fetched"
    with pytest.raises(ConnectionError):
        asyncio.run(fetch(True))

    with breaker.guard() as guard:
        guard.record_status(503)
    with pytest.raises(ValueError, match="bad payload"), breaker.guard():
        raise ValueError("bad payload")
    assert breaker.state is State.OPEN
    with pytest.raises(CircuitOpenError):
        add(1)
    with pytest.raises(CircuitOpenError):
        asyncio.run(fetch(False))

    async def guarded() -> None:
        async with breaker.guard():
            pass

    with pytest.raises(CircuitOpenError):
        asyncio.run(guarded())


def test_a_failing_listener_never_breaks_calls(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    breaker, events = make(clock, failure_threshold=1)

    def broken(event: TransitionEvent) -> None:
        raise RuntimeError("database down")

    breaker.add_listener(broken)
    with caplog.at_level(logging.ERROR, logger="reliability.breaker"):
        fail(breaker)
    assert breaker.state is State.OPEN
    assert len(events) == 1
    assert "listener failed" in caplog.text


def test_no_lock_is_held_around_the_protected_call() -> None:
    """8 calls must be inside the protected function at the same time (a barrier proves it)."""
    breaker = CircuitBreaker("concurrent", CircuitBreakerConfig())
    inside = threading.Barrier(8, timeout=10)
    spans: list[tuple[float, float]] = []

    def work() -> None:
        start = time.monotonic()
        inside.wait()  # raises BrokenBarrierError if calls were serialised
        time.sleep(0.02)
        spans.append((start, time.monotonic()))

    threads = [threading.Thread(target=breaker.call, args=(work,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(spans) == 8
    assert max(start for start, _ in spans) < min(end for _, end in spans)  # all 8 overlap


def test_thread_safe_counting(clock: FakeClock) -> None:
    breaker, _ = make(clock, failure_threshold=0, window_size=100_000, minimum_requests=100_000)

    def hammer() -> None:
        for i in range(2_000):
            if i % 10 == 0:
                fail(breaker)
            else:
                succeed(breaker)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snap = breaker.snapshot()
    assert (snap.calls, snap.failures) == (8_000, 800)


# -- registry --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("registry")
def test_registry_returns_one_breaker_per_name_and_applies_new_config() -> None:
    first = get_circuit_breaker("green_api")
    assert get_circuit_breaker("green_api") is first
    config = CircuitBreakerConfig(failure_threshold=2)
    assert get_circuit_breaker("green_api", config) is first
    assert first.config is config
    with pytest.raises(ValueError, match="another store"):
        get_circuit_breaker("green_api", store=InMemoryStore())
    with pytest.raises(ValueError, match="name"):
        get_circuit_breaker("has space")


@pytest.mark.usefixtures("registry")
def test_default_store_and_global_listeners(clock: FakeClock) -> None:
    store = InMemoryStore(clock=clock, wall_clock=clock)
    set_default_store(store)
    seen: list[TransitionEvent] = []
    add_global_listener(seen.append)
    breaker = get_circuit_breaker("deepseek", CircuitBreakerConfig(failure_threshold=1))
    assert breaker.store is store
    fail(breaker)
    assert [(e.name, e.to_state) for e in seen] == [("deepseek", State.OPEN)]


def test_state_machine_seed_and_window_codes(clock: FakeClock) -> None:
    machine = BreakerStateMachine("x", CircuitBreakerConfig(failure_threshold=3), clock=clock)
    machine.seed(State.OPEN, open_for=5.0, consecutive=0, trips=2)
    assert machine.open_remaining() == 5.0
    with pytest.raises(CircuitOpenError):
        machine.acquire()
    machine.seed(State.CLOSED, open_for=None, consecutive=2, trips=0)
    machine.replay([1, 2])
    assert machine.snapshot().consecutive_failures == 1
    machine.replay([2, 2])
    assert machine.state is State.OPEN
    assert machine.snapshot().trips == 1
