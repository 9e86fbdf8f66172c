"""Issue 10: every seed-named metric is recorded where its event happens (asserted on deltas)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from hotelbot.exceptions import ValidationFailed
from reliability import dead_letters
from reliability.breaker import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, registry
from reliability.breaker.circuit import (
    METRICS_FLUSH_IDLE_INTERVAL,
    METRICS_FLUSH_INTERVAL,
    flush_call_metrics,
    next_flush_pause,
)
from reliability.breaker.stores.redis import RedisBreakerStore, RedisStoreOptions
from reliability.metrics import BREAKER_STATE_CODES, DEAD_LETTERS
from reliability.models import DeadLetter
from reliability.ratelimit import MemorySlots, RateLimiter
from reliability.retry import RetryBudget, RetryConfig, RetryHandler
from reliability.transport import TransportError


def value(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


class Delta:
    """``Delta(name, labels)``: the change of one sample since construction."""

    def __init__(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.name, self.labels = name, labels or {}
        self.start = value(name, self.labels)

    def __call__(self) -> float:
        return value(self.name, self.labels) - self.start


def _boom() -> None:
    raise TimeoutError("slow dependency")


# --- breaker calls -----------------------------------------------------------------------------
def test_breaker_call_metrics_count_success_failure_rejected_and_time_each_admitted_call():
    name = "t_metrics_calls"
    breaker = CircuitBreaker(name, CircuitBreakerConfig(failure_threshold=2, minimum_requests=100))
    ok = Delta("circuit_breaker_requests_total", {"breaker": name, "result": "success"})
    failed = Delta("circuit_breaker_requests_total", {"breaker": name, "result": "failure"})
    rejected = Delta("circuit_breaker_requests_total", {"breaker": name, "result": "rejected"})
    failures = Delta("circuit_breaker_failures_total", {"breaker": name})
    timed = Delta("circuit_breaker_response_time_count", {"breaker": name})
    fast = Delta("circuit_breaker_response_time_bucket", {"breaker": name, "le": "0.005"})

    for _ in range(3):
        breaker.call(lambda: 1)
    for _ in range(2):
        with pytest.raises(TimeoutError):
            breaker.call(_boom)
    with pytest.raises(CircuitOpenError):  # two consecutive failures opened it
        breaker.call(lambda: 1)
    with pytest.raises(CircuitOpenError), breaker.guard():
        pass
    flush_call_metrics()

    assert (ok(), failed(), rejected(), failures()) == (3, 2, 2, 2)
    assert timed() == 5  # rejected calls are not timed
    assert fast() == 5  # each call took far less than 5 ms


def test_guard_records_a_failing_status_as_failure():
    name = "t_metrics_guard"
    breaker = CircuitBreaker(name, CircuitBreakerConfig(failure_threshold=50))
    failed = Delta("circuit_breaker_requests_total", {"breaker": name, "result": "failure"})
    with breaker.guard() as g:
        g.record_status(503)
    flush_call_metrics()
    assert failed() == 1


def test_buffered_breaker_metrics_reach_the_registry_without_an_explicit_flush():
    name = "t_metrics_flusher"
    breaker = CircuitBreaker(name, CircuitBreakerConfig())
    ok = Delta("circuit_breaker_requests_total", {"breaker": name, "result": "success"})
    breaker.call(lambda: 1)
    deadline = time.monotonic() + 30  # the flusher thread runs every second, every 8 s while idle
    while ok() < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ok() == 1


def test_the_flusher_backs_off_while_nothing_is_buffered_and_returns_to_every_second_on_a_call():
    # Given the flusher's pause after a flush that wrote calls
    pause = next_flush_pause(METRICS_FLUSH_IDLE_INTERVAL, written=3)
    assert pause == METRICS_FLUSH_INTERVAL
    # When flushes find nothing, the pause doubles up to the idle bound (an idle process sleeps)
    pauses = []
    for _ in range(6):
        pause = next_flush_pause(pause, written=0)
        pauses.append(pause)
    assert pauses == [2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert METRICS_FLUSH_IDLE_INTERVAL == 8.0
    # And the first flush that writes a call brings it back to every second
    assert next_flush_pause(pause, written=1) == METRICS_FLUSH_INTERVAL


def test_a_flush_reports_how_many_calls_it_wrote():
    breaker = CircuitBreaker("t_metrics_flush_count", CircuitBreakerConfig(failure_threshold=50))
    flush_call_metrics()
    breaker.call(lambda: 1)
    with pytest.raises(ZeroDivisionError):
        breaker.call(lambda: 1 / 0)
    assert flush_call_metrics() == 2
    assert flush_call_metrics() == 0


@pytest.mark.django_db
def test_circuit_breaker_state_gauge_follows_transitions():
    cb = registry.breaker("t_metrics_state")
    cb.force_open("drill")
    forced = BREAKER_STATE_CODES["forced_open"]
    assert value("circuit_breaker_state", {"breaker": "t_metrics_state"}) == forced
    assert value("hotelbot_breaker_open", {"breaker": "t_metrics_state"}) == 1
    cb.disable("drill")
    assert value("circuit_breaker_state", {"breaker": "t_metrics_state"}) == 4
    cb.metrics_only("drill")
    assert value("circuit_breaker_state", {"breaker": "t_metrics_state"}) == 5
    cb.reset()
    assert value("circuit_breaker_state", {"breaker": "t_metrics_state"}) == 0


# --- retries -----------------------------------------------------------------------------------
def _handler(dependency: str, **kwargs: object) -> RetryHandler:
    config = RetryConfig(max_attempts=3, base_delay=0.2, max_delay=0.2, jitter="none")
    return RetryHandler(config, dependency=dependency, sleep=lambda _: None, **kwargs)  # type: ignore[arg-type]


def _flaky(failures: int) -> Callable[[], str]:
    left = [failures]

    def call() -> str:
        if left[0]:
            left[0] -= 1
            raise TransportError("t", "connect refused", request_sent=False)
        return "ok"

    return call


def test_retry_metrics_count_retries_recovery_and_delays():
    dep = "t_retry_ok"
    retried = Delta("retry_attempts_total", {"dependency": dep, "outcome": "retried"})
    recovered = Delta("retry_attempts_total", {"dependency": dep, "outcome": "recovered"})
    delays = Delta("retry_delay_seconds_count", {"dependency": dep})
    slept = Delta("retry_delay_seconds_sum", {"dependency": dep})
    assert _handler(dep).execute(_flaky(2)) == "ok"
    assert (retried(), recovered(), delays()) == (2, 1, 2)
    assert slept() == pytest.approx(0.4)


def test_retry_metrics_count_give_ups_by_reason_budget_included():
    dep = "t_retry_budget"
    exhausted = Delta("retry_attempts_total", {"dependency": dep, "outcome": "attempts_exhausted"})
    budget = Delta("retry_attempts_total", {"dependency": dep, "outcome": "budget_exhausted"})
    with pytest.raises(TransportError):
        _handler(dep).execute(_flaky(5))
    assert exhausted() == 1
    empty = RetryBudget(ratio=0.0, min_retries_per_second=0.0)
    with pytest.raises(TransportError):
        _handler(dep, budget=empty).execute(_flaky(5))
    assert budget() == 1


# --- fallbacks ---------------------------------------------------------------------------------
def test_breaker_falls_back_to_process_state_when_its_store_is_unreachable_and_counts_it():
    used = Delta("fallback_usage_total", {"dependency": "t_fallback", "fallback": "process_store"})
    store = RedisBreakerStore.from_url("redis://127.0.0.1:1/0", RedisStoreOptions(prefix="t:fb"))
    breaker = CircuitBreaker("t_fallback", CircuitBreakerConfig(), store)
    assert breaker.call(lambda: 7) == 7  # answered per process while the store is down
    breaker.call(lambda: 7)
    assert used() == 1  # counted once per switch, not per call


class _DownSlots(MemorySlots):
    name = "redis"

    def reserve(self, key: str, interval: float, max_wait: float, count: int = 1):
        raise ConnectionError("redis down")


def test_pacing_from_the_process_fallback_is_counted():
    used = Delta("fallback_usage_total", {"dependency": "t_pacing", "fallback": "process_pacing"})
    limiter = RateLimiter([_DownSlots()])
    assert limiter.acquire("t_pacing:1:sendMessage", rate=1000.0, max_wait=1.0).granted
    assert used() == 1


# --- dead letters ------------------------------------------------------------------------------
def _letter(reason_code: str = "not_json") -> DeadLetter:
    return dead_letters.dead_letter_quarantine(
        kind="webhook_quarantine", subject="1101000001", raw=b"{", reason_code=reason_code, reason="bad"
    )


@pytest.mark.django_db
def test_dead_letter_creation_counts_by_kind_and_reason():
    added = Delta("dlq_messages_added_total", {"kind": "webhook_quarantine", "reason": "too_large"})
    _letter("too_large")
    _letter("too_large")
    assert added() == 2


@pytest.mark.django_db
def test_dlq_gauge_counts_rows_by_kind_and_status_at_scrape_time():
    labels = {"kind": "webhook_quarantine", "status": "pending"}
    DEAD_LETTERS.reset()
    assert value("dlq_messages_total", labels) == 0  # known kinds and statuses appear at 0
    first, _ = _letter(), _letter()
    DEAD_LETTERS.reset()  # (cached 10 s between scrapes)
    assert value("dlq_messages_total", labels) == 2
    dead_letters.resolve(first, actor=None, via="system", reason="fixed upstream")
    DEAD_LETTERS.reset()
    assert value("dlq_messages_total", labels) == 1
    assert value("dlq_messages_total", {"kind": "webhook_quarantine", "status": "resolved"}) == 1


@pytest.mark.django_db
def test_a_recorded_failure_counts_once_per_letter_not_per_death():
    added = Delta("dlq_messages_added_total", {"kind": "reply_send", "reason": "attempts_exhausted"})
    failure = dead_letters.Failure(
        kind="reply_send",
        reason_code="attempts_exhausted",
        reason="gave up",
        subject_type="messaging.replyjob",
        subject_id=41,
        http_status=503,
    )
    dead_letters.record_failure(failure)
    dead_letters.record_failure(failure)  # the same subject died again: its letter is updated
    assert added() == 1


@pytest.mark.django_db
def test_dlq_processing_duration_is_observed_once_when_a_letter_is_closed():
    count = Delta("dlq_processing_duration_seconds_count", {"kind": "webhook_quarantine"})
    total = Delta("dlq_processing_duration_seconds_sum", {"kind": "webhook_quarantine"})
    letter = _letter()
    DeadLetter.objects.filter(pk=letter.pk).update(created_at=letter.created_at - timedelta(hours=2))
    letter.refresh_from_db()
    dead_letters.discard(letter, actor=None, via="system", reason="spam")
    with pytest.raises(ValidationFailed):
        dead_letters.resolve(letter, actor=None, via="system", reason="again")  # closed: no sample
    assert count() == 1
    assert total() == pytest.approx(7200, abs=60)


@pytest.mark.django_db
def test_a_delivered_redrive_observes_the_letters_life():
    count = Delta("dlq_processing_duration_seconds_count", {"kind": "reply_send"})

    class _Job:
        pk = 77

        class _meta:
            app_label = "messaging"
            model_name = "replyjob"

    dead_letters.record_failure(
        dead_letters.Failure(
            kind="reply_send",
            reason_code="attempts_exhausted",
            reason="gave up",
            subject_type="messaging.replyjob",
            subject_id=77,
            http_status=503,
        )
    )
    assert dead_letters.subject_resolved(subject=_Job(), resolution="delivered") == 1  # type: ignore[arg-type]
    assert count() == 1
