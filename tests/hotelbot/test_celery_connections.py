"""Database connections around Celery tasks: given back to the pool, not the pool closed (docs/cost.md).

Celery's Django fixup closes every connection before and after each task, and in a prefork worker the
whole psycopg pool, so each task opened new PostgreSQL sessions. hotelbot/settings/celery.py tells
the fixup not to (CELERY_DB_REUSE_MAX); hotelbot/celery.py gives the connections back instead.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from celery.fixups.django import DjangoWorkerFixup  # type: ignore[attr-defined]  # untyped stub
from celery.signals import task_postrun, task_prerun
from django.db import connection

from hotelbot.celery import app


class _Task:  # what the task signals carry: a task whose request says whether it runs eagerly
    def __init__(self, *, eager: bool) -> None:
        self.request = SimpleNamespace(is_eager=eager)


def test_the_celery_fixup_does_not_close_connections_around_each_task(monkeypatch):
    fixup = DjangoWorkerFixup(app)
    closed: list[bool] = []
    monkeypatch.setattr(fixup, "_close_database", lambda *a, **k: closed.append(True))

    for _ in range(1000):
        fixup.close_database()

    assert fixup.db_reuse_max == app.conf.get("CELERY_DB_REUSE_MAX") >= 2**30
    assert closed == []


def test_each_task_gives_connections_back_before_and_after_it_runs(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr("django.db.close_old_connections", lambda: calls.append("closed"))
    task = _Task(eager=False)

    task_prerun.send(sender=task, task_id="t-0", task=task, args=(), kwargs={})
    task_postrun.send(sender=task, task_id="t-0", task=task, args=(), kwargs={}, retval=None, state="SUCCESS")

    assert calls == ["closed", "closed"]


@pytest.mark.django_db(transaction=True)
def test_a_task_gives_its_pooled_connection_back_after_it_ran():
    if connection.vendor != "postgresql":
        pytest.skip("the pool is PostgreSQL's (Django never closes SQLite's in-memory test database)")
    task = _Task(eager=False)
    task_prerun.send(sender=task, task_id="t-1", task=task, args=(), kwargs={})
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert connection.connection is not None

    task_postrun.send(sender=task, task_id="t-1", task=task, args=(), kwargs={}, retval=None, state="SUCCESS")

    # Returned to the pool (CONN_MAX_AGE 0), as after a web request; the pool keeps the session.
    assert connection.connection is None
    pool = getattr(connection, "pool", None)  # psycopg's ConnectionPool (the stubs don't know it)
    assert pool is not None
    assert pool.get_stats()["pool_size"] >= 1


def test_an_eager_task_keeps_its_caller_connection(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr("django.db.close_old_connections", lambda: calls.append("closed"))
    task = _Task(eager=True)

    task_prerun.send(sender=task, task_id="t-2", task=task, args=(), kwargs={})
    task_postrun.send(sender=task, task_id="t-2", task=task, args=(), kwargs={}, retval=None, state="SUCCESS")

    assert calls == []
