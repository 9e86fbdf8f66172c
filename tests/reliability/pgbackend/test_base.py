"""The pool hands out no connection PostgreSQL has ended, and checks a healthy one without a query
(reliability/pgbackend)."""

from __future__ import annotations

import time
from unittest import mock

import psycopg
import pytest
from django.db import connection

from reliability.pgbackend.base import ended_by_server

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's pool (services run)")


def _dsn() -> str:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in params.items() if k != "context"})


def _terminate(pid: int) -> None:
    with psycopg.connect(_dsn(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_healthy_connection_is_checked_without_a_query() -> None:
    with (
        psycopg.connect(_dsn(), autocommit=True) as conn,
        mock.patch.object(conn, "execute", side_effect=AssertionError("a query was sent")),
    ):
        assert ended_by_server(conn) is False


def test_a_connection_the_server_ended_is_seen() -> None:
    with psycopg.connect(_dsn(), autocommit=True) as conn:
        _terminate(conn.info.backend_pid)
        deadline = time.monotonic() + 5
        while not ended_by_server(conn):  # the FATAL message arrives within moments
            assert time.monotonic() < deadline, "the ended connection was never seen"
            time.sleep(0.01)
        assert conn.closed or conn.broken


@pytest.mark.django_db(transaction=True)
def test_after_the_server_ended_every_pooled_connection_the_next_request_still_works() -> None:
    assert getattr(connection, "pool", None) is not None  # the pooled default connection
    connection.ensure_connection()
    connection.close()  # back to the pool
    with psycopg.connect(_dsn(), autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    assert ended  # the pool's idle connections (a restart does the same to them)
    time.sleep(0.2)
    with (
        connection.cursor() as cursor
    ):  # without the check: "terminating connection due to administrator command"
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
