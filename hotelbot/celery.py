"""The Celery application; configuration comes from Django settings (``CELERY_*``)."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from contextvars import Token
from typing import Any

from celery import Celery
from celery.signals import before_task_publish, import_modules, task_postrun, task_prerun

from hotelbot import fsbroker  # noqa: F401  registers the embedded broker's transport alias
from hotelbot.logs import clean_request_id, request_id

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotelbot.settings")

app = Celery("hotelbot")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# --- unsafe settings refuse to start (hotelbot/checks.py) ---------------------------------------------
# Celery's Django fixup runs the system checks at worker start but ignores their result. The worker
# and beat load their task modules (import_modules) before the worker's pool forks and before beat's
# scheduler reads the database: any check error stops them there with exit status 1, naming the variable.
# Only in the `celery worker` / `celery beat` programs, and once: a web process fires the same signal
# (django-celery-beat's PeriodicTask admin imports the task modules to list them), and there the checks
# already ran at start (gunicorn's on_starting) and must never end the process from inside a request.
@import_modules.connect
def _refuse_unsafe_settings(**_: Any) -> None:
    program = sys.argv[0] if sys.argv else ""  # .venv/bin/celery, or celery/__main__.py (python -m)
    if "celery" in program and {"worker", "beat"} & set(sys.argv[1:]):
        _startup_checks_once()


@functools.cache
def _startup_checks_once() -> None:
    from hotelbot.checks import startup_checks_or_exit

    startup_checks_or_exit("celery")


# --- database connections: back to the pool after each task, as after a request -----------------------
# (settings/celery.py, CELERY_DB_REUSE_MAX: Celery's fixup would close the whole pool around each task).
def _is_eager(task: Any) -> bool:
    return bool(getattr(getattr(task, "request", None), "is_eager", False))


@task_prerun.connect
@task_postrun.connect
def _release_database_connections(task: Any = None, **_: Any) -> None:
    if not _is_eager(task):
        from django.db import close_old_connections

        close_old_connections()


# --- request id: from the publishing request (or task) into the task it causes -------------------
_HEADER = "request_id"
_tokens: dict[str, Token[str]] = {}


@before_task_publish.connect
def _add_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    rid = request_id.get()
    if rid and headers is not None:
        headers.setdefault(_HEADER, rid)


@task_prerun.connect
def _restore_request_id(task_id: str = "", task: Any = None, **_: Any) -> None:
    request = getattr(task, "request", None)
    rid = getattr(request, _HEADER, None) or (getattr(request, "headers", None) or {}).get(_HEADER)
    # A task without one (beat, a command) gets its own id, so its lines still group.
    _tokens[task_id] = request_id.set(clean_request_id(rid) if rid else f"task-{task_id}")


@task_postrun.connect
def _clear_request_id(task_id: str = "", **_: Any) -> None:
    token = _tokens.pop(task_id, None)
    if token is not None:
        with contextlib.suppress(ValueError):  # set in another context (eager runs)
            request_id.reset(token)
