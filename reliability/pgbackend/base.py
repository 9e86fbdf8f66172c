"""django-prometheus's PostgreSQL backend, whose pooled connections are checked by a poll, not a query.

Connections the pool kept across a PostgreSQL restart must be replaced, not handed to the first
requests after it. Django's way (``CONN_HEALTH_CHECKS`` with a pool: psycopg_pool's check) sends
an empty query on every checkout: one round trip on every request that touches the database, a
tenth of the webhook's time. Yet a pooled connection the server has ended is not silent: a
restart, a failover, ``pg_terminate_backend`` or ``idle_session_timeout`` send a FATAL error and
close the socket, so its socket is readable, while the socket of a healthy idle connection (we
never LISTEN) has nothing to read. So each checkout polls the socket (no I/O); only a readable one
gets the empty query, and a connection that fails it is closed and handed back (the pool discards
it and opens another) before the next one is taken.

Not seen without a query, and not within any useful time with one: a server gone without a word
(a cut network). Connect and pool timeouts and the database breaker cover that case.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from django_prometheus.db.backends.postgresql import base


def ended_by_server(connection: psycopg.Connection[Any]) -> bool:
    """The pooled connection is no longer usable: closed, or its socket readable (the server's
    farewell or EOF) and an empty query on it fails."""
    if connection.closed or connection.broken:
        return True
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
    if not poller.poll(0):
        return False
    try:
        connection.execute("")
    except psycopg.Error:
        return True
    return False


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        pool = self.pool
        if pool is None:
            return connection
        # After a restart every idle connection is dead: at most that many are discarded here.
        for _ in range(pool.max_size):
            if not ended_by_server(connection):
                break
            connection.close()
            pool.putconn(connection)  # a closed connection is discarded and replaced by the pool
            connection = super().get_new_connection(conn_params)
        return connection
