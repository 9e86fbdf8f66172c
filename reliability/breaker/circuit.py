"""The facade code calls (:class:`CircuitBreaker`) and the per-process registry of named breakers.

A :class:`CircuitBreaker` wraps the backend its store creates (the in-process state machine, or a
shared store's backend) and adds calling styles (``call``, decorator, ``guard()``), result
classification and listeners.
"""

from __future__ import annotations

import atexit
import bisect
import functools
import inspect
import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast

from reliability.breaker.machine import (
    _NAME_RE,
    _STATUS_ATTR,
    _UNKNOWN,
    BreakerSnapshot,
    BreakerStore,
    CircuitBreakerConfig,
    CircuitOpenError,
    Listener,
    Outcome,
    Permit,
    State,
    TransitionEvent,
    _is_int,
    _status_attribute,
    classify,
)
from reliability.breaker.stores.memory import InMemoryStore
from reliability.metrics import (
    CIRCUIT_BREAKER_FAILURES,
    CIRCUIT_BREAKER_REQUESTS,
    CIRCUIT_BREAKER_RESPONSE_TIME,
)

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# --------------------------------------------------------------------------------------------------
# The facade
# --------------------------------------------------------------------------------------------------


class CircuitBreaker:
    """Protects calls to one named dependency. Get instances with :func:`get_circuit_breaker`.

    Use ``breaker.call(fn, *args)``, ``@breaker`` / ``breaker.decorate(fn)`` (sync or async
    functions) or ``with breaker.guard() as g:`` (``g.record_status(resp.status_code)`` to classify
    a response that did not raise). Exceptions are classified with :func:`classify` and re-raised.
    """

    def __init__(
        self, name: str, config: CircuitBreakerConfig | None = None, store: BreakerStore | None = None
    ) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(f"breaker name must match {_NAME_RE.pattern}, got {name!r}")
        self.name = name
        self.store: BreakerStore = store if store is not None else InMemoryStore()
        self._config = config if config is not None else CircuitBreakerConfig()
        self._classify_results = self._config.classify_results
        self._listeners: list[Listener] = []
        self._clock = self.store.clock
        self._backend = self.store.backend(name, self._config, self._dispatch)
        self._metrics = CallMetrics(name)
        self._ok = self._metrics.ok.append
        self._failed = self._metrics.failed.append

    # -- calls -------------------------------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` if the breaker admits it; raise :class:`CircuitOpenError` otherwise."""
        backend = self._backend
        try:
            permit = backend.acquire()
        except CircuitOpenError:
            self._metrics.rejected.append(None)
            raise
        clock = self._clock
        start = clock()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._finish(permit, classify(self._config, exc), clock() - start)
            raise
        if self._classify_results and _STATUS_ATTR.get(type(result), _UNKNOWN) is not None:
            self._finish(permit, self._result_outcome(result), clock() - start)
        else:
            duration = clock() - start
            backend.on_success(permit, duration)
            self._ok(duration)
        return result

    def _finish(self, permit: Permit, outcome: Outcome, duration: float) -> None:
        """Record a classified outcome in the backend and the buffered call metrics."""
        self._backend.record(permit, outcome, duration)
        if outcome is Outcome.FAILURE:
            self._failed(duration)
        else:
            self._ok(duration)

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``call`` for coroutine functions (state updates may do one short blocking Redis call)."""
        try:
            permit = self._backend.acquire()
        except CircuitOpenError:
            self._metrics.rejected.append(None)
            raise
        clock = self._clock
        start = clock()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._finish(permit, classify(self._config, exc), clock() - start)
            raise
        self._finish(permit, self._result_outcome(result), clock() - start)
        return result

    def _result_outcome(self, result: object) -> Outcome:
        if self._config.classify_results:
            kind = type(result)
            attr = _STATUS_ATTR.get(kind, _UNKNOWN)
            if attr is _UNKNOWN:
                attr = _STATUS_ATTR[kind] = _status_attribute(result)
            if attr is not None:
                status = getattr(result, attr, None)
                if _is_int(status):
                    return classify(self._config, cast(int, status))
        return Outcome.SUCCESS

    def decorate(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Wrap a function (or coroutine function) so every call goes through the breaker."""
        if inspect.iscoroutinefunction(fn):
            async_fn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.acall(async_fn, *args, **kwargs)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return self.call(fn, *args, **kwargs)

        return wrapper

    __call__ = decorate

    def guard(self) -> Guard:
        """A (sync or async) context manager protecting its block."""
        return Guard(self)

    # -- state and commands ------------------------------------------------------------------------

    @property
    def config(self) -> CircuitBreakerConfig:
        return self._config

    @property
    def state(self) -> State:
        return self._backend.state

    def snapshot(self) -> BreakerSnapshot:
        return self._backend.snapshot()

    def reset(self) -> None:
        self._backend.reset("reset")

    def force_open(self, reason: str = "forced_open", until: datetime | None = None) -> None:
        """Reject every call until ``until`` (an aware datetime; then HALF_OPEN) or until told otherwise."""
        self._backend.force_open(reason or "forced_open", _seconds_until(until))

    def force_close(self, reason: str = "forced_close") -> None:
        self._backend.force_close(reason or "forced_close")

    def disable(self, reason: str = "disabled", until: datetime | None = None) -> None:
        """Admit every call and record nothing until ``until`` (then CLOSED) or until told otherwise."""
        self._backend.disable(reason or "disabled", _seconds_until(until))

    def metrics_only(self, reason: str = "metrics_only", until: datetime | None = None) -> None:
        """Record but never reject until ``until`` (then CLOSED) or until told otherwise."""
        self._backend.metrics_only(reason or "metrics_only", _seconds_until(until))

    def update_config(self, config: CircuitBreakerConfig) -> None:
        """Apply new thresholds at runtime (no restart, no state loss)."""
        if not isinstance(config, CircuitBreakerConfig):
            raise TypeError("config must be a CircuitBreakerConfig")
        if config != self._config:
            self._config = config
            self._classify_results = config.classify_results
            self._backend.update_config(config)

    def flush(self) -> None:
        """Push buffered outcomes to the shared store now (no-op in process)."""
        self._backend.flush()

    # -- listeners ---------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def _dispatch(self, event: TransitionEvent) -> None:
        for listener in (*self._listeners, *_global_listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("circuit breaker listener failed for %s", event)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self.state.value}>"


def _seconds_until(until: datetime | None) -> float | None:
    """Seconds from now to an aware datetime (0 if past), or ``None`` for no end."""
    if until is None:
        return None
    if until.tzinfo is None:
        raise ValueError("until must be a timezone-aware datetime")
    return max(0.0, until.timestamp() - time.time())


class Guard:
    """Context manager returned by :meth:`CircuitBreaker.guard`; usable once."""

    __slots__ = ("_breaker", "_outcome", "_permit", "_start", "_status")

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker
        self._permit: Permit | None = None
        self._start = 0.0
        self._status: int | None = None
        self._outcome: Outcome | None = None

    def record_status(self, status: int) -> None:
        """Classify the block by this HTTP status instead of as a plain success."""
        self._status = status

    def record_outcome(self, outcome: Outcome) -> None:
        """Record the block as ``outcome`` (for callers that classify themselves); wins over an
        exception or a status."""
        self._outcome = outcome

    @property
    def probe(self) -> bool:
        """True when the breaker admitted this block as a half-open probe."""
        return self._permit is not None and self._permit.token is not None

    def __enter__(self) -> Guard:
        try:
            self._permit = self._breaker._backend.acquire()
        except CircuitOpenError:
            self._breaker._metrics.rejected.append(None)
            raise
        self._start = self._breaker._clock()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        breaker = self._breaker
        duration = breaker._clock() - self._start
        if self._outcome is not None:
            outcome = self._outcome
        elif exc is not None:
            outcome = classify(breaker._config, exc)
        elif self._status is not None:
            outcome = classify(breaker._config, self._status)
        else:
            outcome = Outcome.SUCCESS
        assert self._permit is not None, "guard exited without entering"
        breaker._finish(self._permit, outcome, duration)

    async def __aenter__(self) -> Guard:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


# --------------------------------------------------------------------------------------------------
# Call metrics, buffered
# --------------------------------------------------------------------------------------------------

#: How often the per-process flusher thread writes buffered call metrics while calls come in (seconds).
METRICS_FLUSH_INTERVAL = 1.0
#: The longest it sleeps while none do: each flush that finds nothing doubles its pause up to this,
#: and the first that finds a call brings it back to ``METRICS_FLUSH_INTERVAL``. A process without
#: breaker calls wakes every 8 s instead of every second (issue 18: idle CPU, docs/cost.md); the
#: first call after a quiet spell reaches the registry within 8 s (Celery tasks, the broker poller
#: and the ``/metrics`` view flush their own at once).
METRICS_FLUSH_IDLE_INTERVAL = 8.0
_all_metrics: weakref.WeakSet[CallMetrics] = weakref.WeakSet()
_flusher_lock = threading.Lock()
_flusher_pid = 0


class CallMetrics:
    """The seeds' call metrics of one breaker (``circuit_breaker_requests_total``,
    ``circuit_breaker_failures_total``, ``circuit_breaker_response_time``), buffered.

    A protected call only appends its duration to a deque (lock-free, about 25 ns: the breaker's
    per-call budget has no room for a labelled counter and a histogram, and under multiprocess
    mode every increment is a locked mmap write). :func:`flush_call_metrics` writes the buffers in
    bulk: a daemon thread per process every ``METRICS_FLUSH_INTERVAL`` seconds (backing off to
    ``METRICS_FLUSH_IDLE_INTERVAL`` while nothing is buffered), Celery after each task, the broker
    poller after each turn, the ``/metrics`` view before it renders, and ``atexit``.
    """

    __slots__ = (
        "__weakref__",
        "_duration",
        "_failure",
        "_failures",
        "_rejected",
        "_success",
        "failed",
        "name",
        "ok",
        "rejected",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.ok: deque[float] = deque()
        self.failed: deque[float] = deque()
        self.rejected: deque[None] = deque()
        self._success = CIRCUIT_BREAKER_REQUESTS.labels(name, "success")
        self._failure = CIRCUIT_BREAKER_REQUESTS.labels(name, "failure")
        self._rejected = CIRCUIT_BREAKER_REQUESTS.labels(name, "rejected")
        self._failures = CIRCUIT_BREAKER_FAILURES.labels(name)
        self._duration = CIRCUIT_BREAKER_RESPONSE_TIME.labels(name)
        _all_metrics.add(self)
        _ensure_flusher()

    def flush(self) -> int:
        """Write what is buffered; returns the number of calls written."""
        ok, failed = _drain(self.ok), _drain(self.failed)
        rejected = len(_drain(self.rejected))
        if ok:
            self._success.inc(len(ok))
        if failed:
            self._failure.inc(len(failed))
            self._failures.inc(len(failed))
        if rejected:
            self._rejected.inc(rejected)
        if ok or failed:
            observe_many(self._duration, ok + failed)
        return len(ok) + len(failed) + rejected


def _drain(queue: deque[Any]) -> list[Any]:
    """Take what is in ``queue`` now (each popleft is atomic; appends may go on meanwhile)."""
    pop = queue.popleft
    return [pop() for _ in range(len(queue))]


def observe_many(histogram: Any, values: list[float]) -> None:
    """``histogram.observe(v)`` for every value, one increment per bucket (prometheus_client 0.2x
    internals; plain ``observe`` per value if they change)."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for value in values:
            histogram.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect.bisect_left(bounds, value)] += 1
    for index, count in enumerate(counts):
        if count:
            buckets[index].inc(count)
    total.inc(math.fsum(values))


def flush_call_metrics() -> int:
    """Write every breaker's buffered call metrics now (this process); returns the calls written."""
    written = 0
    for metrics in list(_all_metrics):
        try:
            written += metrics.flush()
        except Exception:  # metrics must never break anything
            logger.exception("flushing breaker metrics of %s failed", metrics.name)
    return written


def next_flush_pause(pause: float, written: int) -> float:
    """The flusher's next sleep: ``METRICS_FLUSH_INTERVAL`` after a flush that wrote calls, else
    twice the last one, at most ``METRICS_FLUSH_IDLE_INTERVAL``."""
    if written:
        return METRICS_FLUSH_INTERVAL
    return min(max(pause, METRICS_FLUSH_INTERVAL) * 2, METRICS_FLUSH_IDLE_INTERVAL)


def _flush_forever() -> None:
    pause = METRICS_FLUSH_INTERVAL
    while True:
        time.sleep(pause)
        pause = next_flush_pause(pause, flush_call_metrics())


def _ensure_flusher() -> None:
    """Start this process's flusher thread (again after a fork: threads do not survive one)."""
    global _flusher_pid
    pid = os.getpid()
    if _flusher_pid == pid:
        return
    with _flusher_lock:
        if _flusher_pid != pid:
            threading.Thread(target=_flush_forever, name="breaker-metrics", daemon=True).start()
            _flusher_pid = pid


def _after_fork_in_child() -> None:
    global _flusher_lock
    _flusher_lock = threading.Lock()  # another thread may have held it at the fork
    if _all_metrics:  # breakers inherited from the parent: their buffers need this process's thread
        _ensure_flusher()


atexit.register(flush_call_metrics)
os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------------------------------
# Per-process registry
# --------------------------------------------------------------------------------------------------

_registry: dict[str, CircuitBreaker] = {}
_registry_lock = threading.Lock()
_default_store: BreakerStore | None = None
_default_store_factory: Callable[[], BreakerStore] | None = None
_global_listeners: list[Listener] = []


def get_circuit_breaker(
    name: str, config: CircuitBreakerConfig | None = None, store: BreakerStore | None = None
) -> CircuitBreaker:
    """The process's breaker called ``name``, created on first use.

    A later call with a different ``config`` updates the existing breaker at runtime. ``store``
    defaults to the one given to :func:`set_default_store`, else the one the factory given to
    :func:`set_default_store_factory` builds on first use (in a Django process: the shared store
    of ``reliability.breaker.registry``), else an in-process store; asking for an existing breaker
    with a different store is an error.
    """
    with _registry_lock:
        breaker = _registry.get(name)
        if breaker is None:
            breaker = CircuitBreaker(name, config, store if store is not None else _default())
            _registry[name] = breaker
            return breaker
    if store is not None and store is not breaker.store:
        raise ValueError(f"circuit breaker {name!r} already exists with another store")
    if config is not None:
        breaker.update_config(config)
    return breaker


def set_default_store(store: BreakerStore | None) -> None:
    """Store used by breakers created afterwards without an explicit one (``None``: in process)."""
    global _default_store
    _default_store = store


def set_default_store_factory(factory: Callable[[], BreakerStore] | None) -> None:
    """Build the default store lazily, on the first breaker created without one (no I/O before).

    Registered once at start-up (``ReliabilityConfig.ready``); :func:`set_default_store` wins.
    """
    global _default_store_factory
    _default_store_factory = factory


def _default() -> BreakerStore | None:
    global _default_store
    if _default_store is None and _default_store_factory is not None:
        _default_store = _default_store_factory()
    return _default_store


def add_global_listener(listener: Listener) -> None:
    """Receive the transition events of every breaker of this process."""
    _global_listeners.append(listener)


def remove_global_listener(listener: Listener) -> None:
    _global_listeners.remove(listener)
