"""One mapping of database errors: outage (unavailable, connection lost), busy, or any other."""

from __future__ import annotations

import sqlite3

import psycopg
import psycopg.errors
import pytest
from django.db import DataError, IntegrityError, InterfaceError, OperationalError, ProgrammingError
from psycopg_pool import PoolTimeout

from hotelbot.exceptions import (
    DATABASE_BUSY,
    DATABASE_CONNECTION_LOST,
    DATABASE_ERROR,
    DATABASE_UNAVAILABLE,
    classify_database_error,
)


def wrapped(django_cls: type[Exception], cause: Exception) -> Exception:
    """What Django's DatabaseErrorWrapper raises: its class, the driver's error as __cause__."""
    exc = django_cls(str(cause))
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    "cause",
    [
        psycopg.OperationalError("connection failed: Connection refused"),  # no SQLSTATE: client side
        PoolTimeout("couldn't get a connection after 5.00 sec"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        psycopg.errors.TooManyConnections("sorry, too many clients already"),
        psycopg.errors.ConnectionFailure("connection failure"),
        sqlite3.OperationalError("unable to open database file"),
        sqlite3.OperationalError("disk I/O error"),
    ],
)
def test_server_not_serving_is_an_outage(cause: Exception) -> None:
    failure = classify_database_error(wrapped(OperationalError, cause))
    assert failure is DATABASE_UNAVAILABLE
    assert (failure.code, failure.http_status, failure.outage) == ("database_unavailable", 503, True)


def test_an_operational_error_without_a_driver_cause_is_an_outage() -> None:
    assert classify_database_error(OperationalError("connection refused")) is DATABASE_UNAVAILABLE


def test_a_broken_connection_is_an_outage_with_its_own_code() -> None:
    failure = classify_database_error(InterfaceError("connection already closed"))
    assert failure is DATABASE_CONNECTION_LOST
    assert (failure.code, failure.http_status, failure.outage) == ("database_connection_lost", 503, True)


@pytest.mark.parametrize(
    "cause",
    [
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.errors.SerializationFailure("could not serialize access"),
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
        psycopg.errors.LockNotAvailable("could not obtain lock"),
        sqlite3.OperationalError("database is locked"),
    ],
)
def test_query_level_operational_errors_are_busy_not_an_outage(cause: Exception) -> None:
    failure = classify_database_error(wrapped(OperationalError, cause))
    assert failure is DATABASE_BUSY
    assert (failure.code, failure.http_status, failure.outage) == ("database_busy", 503, False)


@pytest.mark.parametrize(
    "exc",
    [
        IntegrityError("duplicate key"),
        DataError("value too long"),
        ProgrammingError("relation does not exist"),
        wrapped(OperationalError, sqlite3.OperationalError("no such table: messaging_hotel")),
    ],
)
def test_other_database_errors_are_server_errors(exc: Exception) -> None:
    failure = classify_database_error(exc)
    assert failure is DATABASE_ERROR
    assert (failure.code, failure.http_status, failure.outage, failure.retryable) == (
        "database_error",
        500,
        False,
        False,
    )
