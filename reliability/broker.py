"""Publishing from a web request without ever waiting on the broker.

Celery's defaults suit workers (reconnect, retry publishes, wait seconds for a socket), but on a
request path a hung broker — one that accepts TCP connections and never answers — would hold every
request for the sum of those waits. Request-path publishes therefore use their own connection
pool whose sockets time out after ``CELERY_REQUEST_PUBLISH_TIMEOUT`` and which never reconnects
in a loop (``max_retries=0``), and they publish with ``retry=False``. The caller treats a failed
publish as "not published": the database row stays the source of truth and a sweeper re-publishes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import current_app
from django.conf import settings
from kombu import Connection
from kombu.connection import ConnectionPool

_lock = threading.Lock()
_pool: ConnectionPool | None = None
_pool_key: tuple[str, float] | None = None


def request_path_transport_options() -> dict[str, Any]:
    """The broker's transport options with short socket timeouts and no connection retries."""
    timeout = settings.CELERY_REQUEST_PUBLISH_TIMEOUT
    options = dict(current_app.conf.broker_transport_options or {})
    options.update(
        {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "max_retries": 0,  # Connection.default_channel: fail on the first error, no reconnect loop
            "connect_retries_timeout": timeout,
        }
    )
    return options


def _request_path_pool() -> ConnectionPool:
    global _pool, _pool_key
    key = (current_app.conf.broker_url or "", settings.CELERY_REQUEST_PUBLISH_TIMEOUT)
    with _lock:
        if _pool is None or _pool_key != key:
            if _pool is not None:
                _pool.force_close_all()
            connection: Connection = current_app.connection_for_write(
                transport_options=request_path_transport_options(),
                connect_timeout=settings.CELERY_REQUEST_PUBLISH_TIMEOUT,
            )
            _pool, _pool_key = connection.Pool(limit=current_app.conf.broker_pool_limit or 10), key
        return _pool


@contextmanager
def request_path_connection() -> Iterator[Connection]:
    """A pooled broker connection with short timeouts; dropped (no I/O) when a publish on it fails."""
    connection: Connection = _request_path_pool().acquire(
        block=True, timeout=settings.CELERY_REQUEST_PUBLISH_TIMEOUT
    )
    try:
        yield connection
    except BaseException:
        connection.collect()  # close sockets without talking to the (possibly hung) broker
        raise
    finally:
        connection.release()


def request_path_publish_options(connection: Connection) -> dict[str, Any]:
    """``apply_async`` options for a request-path publish: this connection, one attempt, no retries."""
    return {"connection": connection, "retry": False}


def reset_request_path_pool() -> None:
    """Tests and benchmarks that change the broker URL start from a fresh pool."""
    global _pool, _pool_key
    with _lock:
        if _pool is not None:
            _pool.force_close_all()
        _pool = _pool_key = None
