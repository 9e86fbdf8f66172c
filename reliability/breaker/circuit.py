"""The facade code calls (:class:`CircuitBreaker`) and the per-process registry of named breakers.

A :class:`CircuitBreaker` wraps the backend its store creates (the in-process state machine, or a
shared store's backend) and adds calling styles (``call``, decorator, ``guard()``), result
classification and listeners.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
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

    # -- calls -------------------------------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn`` if the breaker admits it; raise :class:`CircuitOpenError` otherwise."""
        backend = self._backend
        permit = backend.acquire()
        clock = self._clock
        start = clock()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            backend.record(permit, classify(self._config, exc), clock() - start)
            raise
        if self._classify_results and _STATUS_ATTR.get(type(result), _UNKNOWN) is not None:
            backend.record(permit, self._result_outcome(result), clock() - start)
        else:
            backend.on_success(permit, clock() - start)
        return result

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """``call`` for coroutine functions (state updates may do one short blocking Redis call)."""
        backend = self._backend
        permit = backend.acquire()
        clock = self._clock
        start = clock()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            backend.record(permit, classify(self._config, exc), clock() - start)
            raise
        backend.record(permit, self._result_outcome(result), clock() - start)
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

    __slots__ = ("_breaker", "_permit", "_start", "_status")

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker
        self._permit: Permit | None = None
        self._start = 0.0
        self._status: int | None = None

    def record_status(self, status: int) -> None:
        """Classify the block by this HTTP status instead of as a plain success."""
        self._status = status

    def __enter__(self) -> Guard:
        self._permit = self._breaker._backend.acquire()
        self._start = self._breaker._clock()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        breaker = self._breaker
        duration = breaker._clock() - self._start
        if exc is not None:
            outcome = classify(breaker._config, exc)
        elif self._status is not None:
            outcome = classify(breaker._config, self._status)
        else:
            outcome = Outcome.SUCCESS
        assert self._permit is not None, "guard exited without entering"
        breaker._backend.record(self._permit, outcome, duration)

    async def __aenter__(self) -> Guard:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


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


def clear_registry() -> None:
    """Forget every breaker, the default store and global listeners (for tests; a default store
    factory stays registered and builds a fresh store on next use)."""
    global _default_store
    with _registry_lock:
        _registry.clear()
    _default_store = None
    _global_listeners.clear()
