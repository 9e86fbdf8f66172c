"""Eight real processes share one breaker through a real Redis.

These are the failure modes of pybreaker's Redis storage: every process probing in half-open,
counters lost when processes write concurrently, and state changes that other processes never see.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from reliability.breaker import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, State
from reliability.breaker.stores.redis import RedisBreakerStore, RedisStoreOptions

from .conftest import read_hash

pytestmark = pytest.mark.redis

PROCESSES = 8
CTX = multiprocessing.get_context("fork")


def make_breaker(url: str, prefix: str, config: dict[str, Any]) -> CircuitBreaker:
    store = RedisBreakerStore.from_url(url, RedisStoreOptions(prefix=prefix))
    return CircuitBreaker("shared", CircuitBreakerConfig(**config), store)


def run_processes(target: Callable[..., None], args: tuple[Any, ...], timeout: float = 20.0) -> list[Any]:
    """Run ``target(index, results, *args)`` in PROCESSES processes; return what they put in ``results``."""
    results: Any = CTX.Queue()
    procs = [CTX.Process(target=target, args=(i, results, *args), daemon=True) for i in range(PROCESSES)]
    for proc in procs:
        proc.start()
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < PROCESSES:
            out.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
    except queue.Empty:
        pytest.fail(f"only {len(out)} of {PROCESSES} processes reported within {timeout}s")
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
    assert [proc.exitcode for proc in procs] == [0] * PROCESSES
    return out


def fail_once(breaker: CircuitBreaker) -> None:
    def boom() -> None:
        raise TimeoutError("provider timed out")

    with pytest.raises(TimeoutError):
        breaker.call(boom)


# -- exactly N probes cluster-wide -----------------------------------------------------------------


def _probe_worker(
    index: int, results: Any, url: str, prefix: str, config: dict[str, Any], go: Any, release: Any
) -> None:
    breaker = make_breaker(url, prefix, config)
    breaker.state  # noqa: B018 - learn the shared (open) state before the race
    go.wait()

    def probe() -> tuple[float, float]:
        start = time.time()
        results.put(("probing", index))
        release.wait(timeout=10)  # hold the probe slot until the parent has seen every answer
        return start, time.time()

    try:
        results.put(("probe", breaker.call(probe)))
    except CircuitOpenError as error:
        results.put(("rejected", error.state.value))


def test_exactly_the_permitted_probes_run_cluster_wide(redis_url: str, key_prefix: str) -> None:
    """pybreaker lets every process probe a half-open breaker; here 8 processes race for 2 slots."""
    config = {
        "failure_threshold": 1,
        "recovery_timeout": 0.3,
        "half_open_max_calls": 2,
        "success_threshold": 5,
        "half_open_max_wait": 30.0,
    }
    breaker = make_breaker(redis_url, key_prefix, config)
    fail_once(breaker)
    go = CTX.Barrier(PROCESSES + 1, timeout=15)
    release = CTX.Event()
    results: Any = CTX.Queue()
    procs = [
        CTX.Process(
            target=_probe_worker, args=(i, results, redis_url, key_prefix, config, go, release), daemon=True
        )
        for i in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    seen: list[tuple[str, Any]] = []
    try:
        time.sleep(0.35)  # the recovery timeout has passed: every process now wants to probe
        go.wait()
        # Every process either holds a probe slot (blocked in the call) or was rejected.
        deadline = time.monotonic() + 10
        while len(seen) < PROCESSES and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                seen.append(results.get(timeout=0.1))
        release.set()
        while (
            sum(kind in ("probe", "rejected") for kind, _ in seen) < PROCESSES and time.monotonic() < deadline
        ):
            with contextlib.suppress(queue.Empty):
                seen.append(results.get(timeout=0.1))
    finally:
        release.set()
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
    probing = [value for kind, value in seen if kind == "probing"]
    probes = [value for kind, value in seen if kind == "probe"]
    rejected = [value for kind, value in seen if kind == "rejected"]
    assert len(probing) == 2, seen
    assert len(probes) == 2, seen
    assert rejected == ["half_open"] * (PROCESSES - 2), seen
    (start_a, end_a), (start_b, end_b) = probes
    assert max(start_a, start_b) < min(end_a, end_b)  # both probes ran at the same time
    snapshot = breaker.snapshot()  # synced: this process's cache may still say OPEN for 0.5 s
    assert (snapshot.state, snapshot.probes_in_flight) == (State.HALF_OPEN, 0)
    assert [proc.exitcode for proc in procs] == [0] * PROCESSES


# -- no lost counts --------------------------------------------------------------------------------


def _count_worker(
    index: int, results: Any, url: str, prefix: str, config: dict[str, Any], go: Any, pattern: str
) -> None:
    breaker = make_breaker(url, prefix, config)
    breaker.state  # noqa: B018
    go.wait()
    for outcome in pattern:
        if outcome == "F":
            with contextlib.suppress(TimeoutError):
                breaker.call(_raise_timeout)
        else:
            breaker.call(_ok)
    breaker.flush()
    results.put(index)


def _raise_timeout() -> None:
    raise TimeoutError("slow provider")


def _ok() -> None:
    return None


def _shared_counts(redis_client: redis.Redis, key: str) -> dict[str, int]:
    return {k: int(v) for k, v in read_hash(redis_client, key).items() if k in {"wt", "wf", "cf", "ep"}}


def test_no_failure_is_lost_when_processes_record_at_once(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    config = {"failure_threshold": 25, "window_size": 1_000, "minimum_requests": 1_000}
    go = CTX.Barrier(PROCESSES, timeout=15)
    run_processes(_count_worker, (redis_url, key_prefix, config, go, "FFF"))
    breaker = make_breaker(redis_url, key_prefix, config)
    key = breaker.store.key("shared")  # type: ignore[attr-defined]
    assert _shared_counts(redis_client, key) == {"wt": 24, "wf": 24, "cf": 24, "ep": 0}
    assert breaker.state is State.CLOSED  # 24 consecutive failures, threshold 25
    fail_once(breaker)
    assert breaker.state is State.OPEN


def test_no_outcome_is_lost_in_batched_recording(
    redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    config = {"failure_threshold": 0, "window_size": 5_000, "minimum_requests": 5_000}
    pattern = ("S" * 37 + "F") * 10 + "S" * 55  # 435 calls, 10 failures per process
    go = CTX.Barrier(PROCESSES, timeout=15)
    run_processes(_count_worker, (redis_url, key_prefix, config, go, pattern))
    key = make_breaker(redis_url, key_prefix, config).store.key("shared")  # type: ignore[attr-defined]
    counts = _shared_counts(redis_client, key)
    assert (counts["wt"], counts["wf"]) == (PROCESSES * len(pattern), PROCESSES * 10)


# -- a trip reaches every process within a second --------------------------------------------------


def _watch_worker(
    index: int, results: Any, url: str, prefix: str, config: dict[str, Any], ready: Any
) -> None:
    breaker = make_breaker(url, prefix, config)
    breaker.call(_ok)
    ready.wait()
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        try:
            breaker.call(_ok)
        except CircuitOpenError:
            results.put(("rejected", time.time()))
            return
        time.sleep(0.01)
    results.put(("never", time.time()))


def test_a_trip_reaches_every_process_within_one_second(redis_url: str, key_prefix: str) -> None:
    config = {"failure_threshold": 3}
    ready = CTX.Barrier(PROCESSES + 1, timeout=15)
    results: list[Any] = []

    runner = threading.Thread(
        target=lambda: results.extend(run_processes(_watch_worker, (redis_url, key_prefix, config, ready)))
    )
    runner.start()
    ready.wait()
    time.sleep(0.3)  # the workers are calling happily
    breaker = make_breaker(redis_url, key_prefix, config)
    for _ in range(3):
        fail_once(breaker)
    tripped_at = time.time()
    assert breaker.state is State.OPEN
    runner.join(timeout=30)
    assert [kind for kind, _ in results] == ["rejected"] * PROCESSES
    lag = max(at for _, at in results) - tripped_at
    assert lag <= 1.0, f"slowest process saw the trip after {lag:.3f}s"
