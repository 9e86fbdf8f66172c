"""Eight real processes share one breaker through a real Redis, a SQLite file and PostgreSQL.

These are the failure modes of pybreaker's Redis storage: every process probing in half-open,
counters lost when processes write concurrently, and state changes that other processes never see.
Every test runs on each shared store (``shared`` fixture): the Redis store, and the database store
on SQLite (WAL, IMMEDIATE transactions) and on PostgreSQL (SELECT ... FOR UPDATE).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.scratch_db import scratch_alias
from reliability.breaker import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, State
from reliability.breaker.stores.database import DatabaseBreakerStore
from reliability.breaker.stores.redis import RedisBreakerStore, RedisStoreOptions
from tests.reliability.conftest import read_hash

pytestmark = pytest.mark.redis

PROCESSES = 8
CTX = multiprocessing.get_context("fork")


@dataclass(frozen=True)
class Shared:
    """Where the shared state lives: ``kind`` "redis" (``target`` a URL) or "database" (an alias)."""

    kind: str
    target: str
    prefix: str = ""

    def store(self) -> RedisBreakerStore | DatabaseBreakerStore:
        if self.kind == "redis":
            return RedisBreakerStore.from_url(self.target, RedisStoreOptions(prefix=self.prefix))
        return DatabaseBreakerStore(self.target)

    def counts(self) -> dict[str, int]:
        """The shared window and epoch, read straight from the store."""
        if self.kind == "redis":
            client = redis.Redis.from_url(self.target, socket_timeout=2)
            try:
                raw: dict[str, Any] = read_hash(
                    client, RedisBreakerStore(client, RedisStoreOptions(prefix=self.prefix)).key("shared")
                )
            finally:
                client.close()
        else:
            from reliability.models import BreakerState

            raw = json.loads(BreakerState.objects.using(self.target).get(name="shared").data)
        return {k: int(v) for k, v in raw.items() if k in {"wt", "wf", "cf", "ep"}}

    def before_fork(self) -> None:
        """Children must not share the parent's database connection."""
        if self.kind == "database":
            from django.db import connections

            connections[self.target].close()


@pytest.fixture(params=["redis", "sqlite", "postgresql"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Shared]:
    if request.param == "redis":
        yield Shared("redis", request.getfixturevalue("redis_url"), request.getfixturevalue("key_prefix"))
        return
    blocker = request.getfixturevalue("django_db_blocker")
    with blocker.unblock(), scratch_alias(request.param, tmp_path) as alias:
        yield Shared("database", alias)


def make_breaker(shared: Shared, config: dict[str, Any]) -> CircuitBreaker:
    return CircuitBreaker("shared", CircuitBreakerConfig(**config), shared.store())


def run_processes(target: Callable[..., None], args: tuple[Any, ...], timeout: float = 20.0) -> list[Any]:
    """Run ``target(index, results, *args)`` in PROCESSES processes; return what they put in ``results``."""
    args[0].before_fork()
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
    index: int, results: Any, shared: Shared, config: dict[str, Any], go: Any, release: Any
) -> None:
    breaker = make_breaker(shared, config)
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


def test_exactly_the_permitted_probes_run_cluster_wide(shared: Shared) -> None:
    """pybreaker lets every process probe a half-open breaker; here 8 processes race for 2 slots."""
    config = {
        "failure_threshold": 1,
        "recovery_timeout": 0.3,
        "half_open_max_calls": 2,
        "success_threshold": 5,
        "half_open_max_wait": 30.0,
    }
    breaker = make_breaker(shared, config)
    fail_once(breaker)
    shared.before_fork()
    go = CTX.Barrier(PROCESSES + 1, timeout=15)
    release = CTX.Event()
    results: Any = CTX.Queue()
    procs = [
        CTX.Process(target=_probe_worker, args=(i, results, shared, config, go, release), daemon=True)
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
    index: int, results: Any, shared: Shared, config: dict[str, Any], go: Any, pattern: str
) -> None:
    breaker = make_breaker(shared, config)
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


def test_no_failure_is_lost_when_processes_record_at_once(shared: Shared) -> None:
    config = {"failure_threshold": 25, "window_size": 1_000, "minimum_requests": 1_000}
    go = CTX.Barrier(PROCESSES, timeout=15)
    run_processes(_count_worker, (shared, config, go, "FFF"))
    breaker = make_breaker(shared, config)
    assert shared.counts() == {"wt": 24, "wf": 24, "cf": 24, "ep": 0}
    assert breaker.state is State.CLOSED  # 24 consecutive failures, threshold 25
    fail_once(breaker)
    assert breaker.state is State.OPEN


def test_no_outcome_is_lost_in_batched_recording(shared: Shared) -> None:
    config = {"failure_threshold": 0, "window_size": 5_000, "minimum_requests": 5_000}
    pattern = ("S" * 37 + "F") * 10 + "S" * 55  # 435 calls, 10 failures per process
    go = CTX.Barrier(PROCESSES, timeout=15)
    run_processes(_count_worker, (shared, config, go, pattern))
    counts = shared.counts()
    assert (counts["wt"], counts["wf"]) == (PROCESSES * len(pattern), PROCESSES * 10)


# -- a trip reaches every process within a second --------------------------------------------------


def _watch_worker(index: int, results: Any, shared: Shared, config: dict[str, Any], ready: Any) -> None:
    breaker = make_breaker(shared, config)
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


def test_a_trip_reaches_every_process_within_one_second(shared: Shared) -> None:
    config = {"failure_threshold": 3}
    ready = CTX.Barrier(PROCESSES + 1, timeout=15)
    results: list[Any] = []

    runner = threading.Thread(
        target=lambda: results.extend(run_processes(_watch_worker, (shared, config, ready)))
    )
    runner.start()
    ready.wait()
    time.sleep(0.3)  # the workers are calling happily
    breaker = make_breaker(shared, config)
    # Three failures in a row trip it, but "in a row" is cluster-wide: a success batch another
    # process records between two of them rightly resets the count (seen on PostgreSQL, where each
    # recorded failure takes a few ms). So fail until it trips, and bound how many that took.
    failures = 0
    while breaker.state is not State.OPEN and failures < 12:
        fail_once(breaker)
        failures += 1
    tripped_at = time.time()
    assert breaker.state is State.OPEN
    assert failures >= 3  # never before the threshold
    runner.join(timeout=30)
    assert [kind for kind, _ in results] == ["rejected"] * PROCESSES
    lag = max(at for _, at in results) - tripped_at
    assert lag <= 1.0, f"slowest process saw the trip after {lag:.3f}s"
