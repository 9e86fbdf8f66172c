"""Test resets, in one place: each makes one module of ``reliability/`` forget what this process
kept (breakers, budgets, limiters, snapshots, flags), so a test starts as a fresh process would.

Only tests import this module; the product never resets its own state (a process that must
start over after a fork checks its pid where it builds the thing). ``tests/conftest.py``'s
autouse fixture calls :func:`reset_all` around every test; tests call the others directly when
a test needs "a process started after this" in the middle (e.g. a snapshot due for a refresh).
"""

from __future__ import annotations

import contextlib
import queue

from reliability import broker, database_breaker, ratelimit, retry
from reliability.breaker import circuit, registry
from reliability.degradation import state as degradation_state
from reliability.health import probe as health_probe
from reliability.health import registry as health_registry
from reliability.health.checks import WorkerCheck


def reset_circuit_breakers() -> None:
    """Forget every breaker, the default store and the global listeners (a default store factory
    stays registered and builds a fresh store on next use)."""
    with circuit._registry_lock:
        circuit._registry.clear()
    circuit._default_store = None
    circuit._global_listeners.clear()


def reset_breakers() -> None:
    """Forget every breaker, the shared store and the loaded admin configs; drop queued events."""
    with registry._lock:
        reset_circuit_breakers()
        registry._store = None
        registry._loaded.clear()
    with contextlib.suppress(queue.Empty):
        while True:
            registry._events.get_nowait()


def reset_database_breaker() -> None:
    with database_breaker._lock:
        database_breaker._breaker = None


def reset_retry_budgets() -> None:
    with retry._registry_lock:
        retry._budgets.clear()


def reset_rate_limits() -> None:
    """Forget the process's limiters (rebuilt from settings on next use) and held slots."""
    ratelimit._leases = ratelimit._Leases()
    for built in (ratelimit._limiter, ratelimit._inbound):
        with built.lock:
            built.limiter = None


def reset_degradation() -> None:
    """Forget the degradation snapshot: the next question reads the row."""
    degradation_state._process = degradation_state._Process()


def reset_health() -> None:
    """Forget cached outcomes (here and in the Django cache) and in-flight probes."""
    with health_probe._pool_lock:
        names = {*health_probe._memo, *health_probe._inflight}
        health_probe._memo.clear()
        health_probe._inflight.clear()
    for name in names | set(health_registry._registered):
        health_probe._cache_delete(name)
    health_probe._cache_delete(WorkerCheck.check_name)


def reset_broker_health() -> None:
    """Forget that this process saw the broker down."""
    with broker._state_lock:
        broker._seen = broker._Seen()
    broker.drop_probe_connection()


def reset_request_path_pool() -> None:
    """Close the request-path publishing pool: a test that changes the broker URL starts afresh."""
    with broker._lock:
        if broker._pool is not None:
            broker._pool.force_close_all()
        broker._pool = broker._pool_key = None


def forget_process_state() -> None:
    """Forget what this process keeps in memory and nothing shared (no cache, no store): what the
    drill's long-lived shell (drill/shell_server.py) does after each script, to answer the next
    one as a fresh ``manage.py shell`` would."""
    reset_database_breaker()
    reset_breakers()
    reset_retry_budgets()
    reset_rate_limits()
    reset_degradation()


def reset_all() -> None:
    """What every test starts and ends with (the autouse fixture in tests/conftest.py)."""
    forget_process_state()
