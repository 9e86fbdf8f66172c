"""Celery beat's scheduler: django-celery-beat's ``DatabaseScheduler`` (staff edit the schedule in
admin), made nearly free while nothing happens (issue 18: web + worker + beat at most 3 ms of CPU
per second while idle; docs/cost.md).

Two idle costs of the stock scheduler are cut, nothing else changes:

* **Its check for schedule changes** ran on every tick of beat (one query of the
  ``django_celery_beat_periodictasks`` row, 1 to 3 a second with entries due every few seconds). Here it
  runs at most every ``BEAT_SCHEDULE_CHECK_INTERVAL`` seconds (default 5, django-celery-beat's own
  longest sleep: an admin's change reaches beat no later than before).
* **An entry whose task has nothing to do was still published**: a broker round trip, a worker's
  task with its connection handling and queries, an ack. An app registers an *idle check* for a
  task name (:func:`register_idle_check`, in ``ready``): one cheap read (an indexed ``EXISTS``) run
  here, in the beat process. When it answers False the due run is skipped; it counts as run, so the
  next check comes one interval later, and work that appears is found within one interval, as
  before. A check that fails publishes the task (as without a check).

While the broker is down the workers run the interval entries themselves
(``reliability.broker_fallback``), without these checks. This module knows task *names*, never
the domain.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django_celery_beat.schedulers import DatabaseScheduler

logger = logging.getLogger(__name__)

_idle_checks: dict[str, Callable[[], bool]] = {}


def register_idle_check(task_name: str, has_work: Callable[[], bool]) -> None:
    """Beat publishes ``task_name`` only when ``has_work()`` is true (or raises)."""
    _idle_checks[task_name] = has_work


def has_work(task_name: str) -> bool:
    """Whether beat should publish ``task_name`` now: no idle check, its check says so, or it failed."""
    check = _idle_checks.get(task_name)
    if check is None:
        return True
    try:
        return bool(check())
    except Exception as e:  # the database away: publish, the task copes as it always did
        logger.warning("idle check of %s failed: %s: %s", task_name, type(e).__name__, str(e)[:200])
        close_old_connections()  # a broken connection is dropped; the next check opens one
        return True


class Scheduler(DatabaseScheduler):
    """``CELERY_BEAT_SCHEDULER``: the database scheduler with its idle costs cut (module docstring)."""

    _changes_checked_at = float("-inf")

    def adjust(self, n: Any, drift: float = 0.0) -> Any:
        # Celery's default drift (-10 ms) made beat spin: an entry woken 10 ms early is "not due,
        # check again in 0.005 s", re-filed 10 ms early again, i.e. in the past, and ticked at once
        # (celery/beat.py, the re-heap of issue 7649): about 40 ticks with no sleep before every run.
        return super().adjust(n, drift=drift)

    def schedule_changed(self) -> bool:
        now = time.monotonic()
        if now - self._changes_checked_at < settings.BEAT_SCHEDULE_CHECK_INTERVAL:
            return False
        self._changes_checked_at = now
        return bool(super().schedule_changed())

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        if not has_work(entry.task):
            logger.debug("Scheduler: %s has nothing to do; not sent", entry.name)
            return
        super().apply_entry(entry, producer=producer)
