"""The ``database`` breaker: requests fail fast while the database is down (issue 9, item 5).

``DatabaseBreakerMiddleware`` (``reliability/middleware.py``) runs every request that needs the
database through this breaker. While it is closed each request's outcome is recorded: a request
that met a connection-level database error (``hotelbot.exceptions.classify_database_error``:
unreachable, refused, pool timeout, server shutting down, connection lost) is a failure; one that
used the database without such an error a success; one that never touched it is ignored. After
``DB_BREAKER_FAILURE_THRESHOLD`` failures in a row it opens: for ``DB_BREAKER_RECOVERY_TIMEOUT``
seconds every such request is answered 503 at once instead of each waiting for the connect or pool
timeout. Then one request probes with ``SELECT 1`` before it runs: success closes the breaker and
the request goes on; failure reopens it.

Where the state lives, and why: per process (``InMemoryStore``), in every deployment.

* Not in the database: a breaker guarding the database cannot keep its state in it (the project's
  usual shared store without Redis, and Redis's fallback).
* Not in Redis either, although it could be shared there: the breaker is asked on *every* request
  (admin, API, the webhook, readiness), and a Redis-backed breaker makes every request depend on
  Redis: a hung Redis would cost requests its socket timeout whenever the store re-checks it, and
  readiness, which must ask the database only, would touch Redis. What sharing would save is small:
  without it each process finds an outage by itself (one request per process pays the connect or
  pool timeout, then that process answers at once) and probes by itself (one ``SELECT 1`` per
  process every ``DB_BREAKER_RECOVERY_TIMEOUT``).
* Per process is cheap: admission and rejection are a few attribute reads, no I/O, no lock on the
  closed path.

The breaker is not in ``get_circuit_breaker``'s registry and has no ``BreakerConfig`` row: admin and
the API read rows and states through the database (down exactly when this breaker matters), and a
staff override stored there could not be lifted while it held. Its thresholds are settings. Its
transitions go to the same listeners as every breaker (log line, ``hotelbot_breaker_*`` and
``circuit_breaker_*`` metrics, ``BreakerEvent`` rows, written when the database is back).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, Error, connections
from django.http import HttpRequest

from hotelbot.exceptions import classify_database_error, note_database_error, noted_database_error
from reliability.breaker import CircuitBreaker, CircuitBreakerConfig, InMemoryStore, Outcome

NAME = "database"

_lock = threading.Lock()
_breaker: CircuitBreaker | None = None


def config() -> CircuitBreakerConfig:
    """Consecutive outage errors trip it; rates and slowness never do (slow pages are not an outage)."""
    return CircuitBreakerConfig(
        failure_threshold=settings.DB_BREAKER_FAILURE_THRESHOLD,
        recovery_timeout=settings.DB_BREAKER_RECOVERY_TIMEOUT,
        success_threshold=1,
        slow_call_duration=3600.0,
        slow_call_rate_threshold=100.0,
        failure_rate_threshold=100.0,
        window_size=100,
        minimum_requests=100,
        half_open_max_calls=1,
        half_open_max_wait=60.0,
    )


def breaker() -> CircuitBreaker:
    """This process's ``database`` breaker (built on first use; no I/O)."""
    global _breaker
    cb = _breaker
    if cb is not None:
        return cb
    with _lock:
        if _breaker is None:
            from reliability.breaker import registry

            registry.store()  # registers the global listener: transitions -> log, metrics, event rows
            _breaker = CircuitBreaker(NAME, config(), InMemoryStore())
        return _breaker


def probe() -> Error | None:
    """``SELECT 1`` on the request's own connection; the error, or ``None`` when it answered."""
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Error as e:  # DatabaseError or InterfaceError
        with contextlib.suppress(Exception):  # a broken connection: the next request opens a fresh one
            connection.close()
        return e
    return None


def outcome_of(error: BaseException | None, *, used_database: bool) -> Outcome:
    """A request's outcome for the breaker: only an outage error is a failure; a request that
    never touched the database proves nothing (and frees a probe slot)."""
    if error is not None:
        return Outcome.FAILURE if classify_database_error(error).outage else Outcome.SUCCESS
    return Outcome.SUCCESS if used_database else Outcome.IGNORED


def request_outcome(request: HttpRequest) -> Outcome:
    # With the pool (CONN_MAX_AGE=0) the request's connection is still open here and closed at
    # request_finished, after the middleware: "open" means this request used the database.
    used = connections[DEFAULT_DB_ALIAS].connection is not None
    return outcome_of(noted_database_error(request), used_database=used)


def note_request_exception(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """``got_request_exception`` receiver: a database error that became Django's 500 (raised by a
    middleware, or a view no middleware answered) is noted for the breaker and its mapping."""
    exc = sys.exc_info()[1]
    if request is not None and isinstance(exc, Error):
        note_database_error(request, exc)
