"""Work without the broker: while it is unreachable, workers poll the database themselves.

The database rows are the source of truth (a reply job row, a dead letter row), the broker only a
fast doorbell. So when the broker (Redis or RabbitMQ) is down, each worker process runs a small
daemon thread (:func:`start`, from Celery's ``worker_process_init`` signal) that

* probes the broker every ``BROKER_PROBE_INTERVAL`` seconds while it is up (one connection with
  short timeouts; no database query at all then), and every poll while it is down;
* while it is down, every ``REPLY_DB_POLL_INTERVAL`` seconds runs the registered *pollers* (the
  messaging app registers "take due reply jobs straight from the database": ``SELECT ... FOR UPDATE
  SKIP LOCKED`` on PostgreSQL) and the beat schedule's interval entries that are due, each at most
  once per its interval across the whole deployment (a shared pacing slot, ``reliability.ratelimit``:
  Redis, else the database) — beat cannot publish without a broker, so the workers run them;
* when the broker answers again, runs the registered *recovery hooks* (breaker state reconciled,
  caches warmed) once and goes back to waiting for broker tasks.

Nothing here runs twice what the broker also delivers: every job is claimed with a row lock and a
fresh lease token, and a task that finds its job done, or claimed by a poller, skips it.
This module knows task *names* from the beat schedule, never the messaging app.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections

from reliability import broker, ratelimit
from reliability.breaker.circuit import flush_call_metrics
from reliability.metrics import BROKER_FALLBACK_RUNS

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Poller:
    name: str
    #: Called with ``limit`` (at most this many items per poll); returns how many it handled.
    run: Callable[[int], int]


_pollers: dict[str, Poller] = {}
_recovery_hooks: dict[str, Callable[[], object]] = {}
_thread: threading.Thread | None = None
_thread_pid = 0
_stop = threading.Event()
_lock = threading.Lock()


def register_poller(name: str, run: Callable[[int], int]) -> None:
    """Run ``run(limit)`` every poll while the broker is down (apps register theirs in ``ready``)."""
    _pollers[name] = Poller(name, run)


def register_recovery(name: str, hook: Callable[[], object]) -> None:
    """Run ``hook()`` once in each process when the broker (Redis) answers again."""
    _recovery_hooks[name] = hook


def active() -> bool:
    """This process's poller runs and the broker is down: it takes the work from the database."""
    thread = _thread
    return broker.is_down() and thread is not None and _thread_pid == os.getpid() and thread.is_alive()


def interval_entries() -> list[tuple[str, str, float]]:
    """The beat schedule's entries with a plain interval (seconds): (entry, task name, seconds).
    Crontab entries (hourly report, nightly purge) wait for beat."""
    entries = []
    for entry, spec in settings.CELERY_BEAT_SCHEDULE.items():
        schedule = spec.get("schedule")
        if isinstance(schedule, int | float) and schedule > 0:
            entries.append((entry, str(spec["task"]), float(schedule)))
    return entries


def run_due_periodic(*, only: set[str] | None = None) -> list[str]:
    """Run the interval entries whose shared slot is free (once per interval, deployment-wide)."""
    from celery import current_app

    ran = []
    for entry, task_name, seconds in interval_entries():
        if only is not None and entry not in only:
            continue
        grant = ratelimit.acquire(f"broker_fallback:{entry}", rate=1.0 / seconds, max_wait=0.0)
        if not grant.granted:
            continue
        task = current_app.tasks.get(task_name)
        if task is None:
            logger.warning("broker fallback: beat entry %s names unknown task %s", entry, task_name)
            continue
        try:
            task.run()  # in this thread, not published: there is no broker to publish to
        except Exception:
            logger.exception("broker fallback: beat entry %s failed", entry)
            continue
        BROKER_FALLBACK_RUNS.labels(entry).inc()
        ran.append(entry)
    return ran


def run_pollers(*, limit: int | None = None) -> int:
    """One poll: every registered poller once; returns the items handled."""
    handled = 0
    for poller in list(_pollers.values()):
        try:
            handled += poller.run(limit if limit is not None else settings.REPLY_DB_POLL_BATCH)
        except Exception:
            logger.exception("broker fallback: poller %s failed", poller.name)
    return handled


def run_recovery_hooks() -> list[str]:
    done = []
    for name, hook in list(_recovery_hooks.items()):
        try:
            hook()
            done.append(name)
        except Exception:
            logger.exception("broker fallback: recovery hook %s failed", name)
    return done


def step() -> float:
    """One turn of the loop; returns the seconds to sleep before the next one."""
    was_down = broker.is_down()
    up = broker.probe()
    if up:
        if was_down:
            logger.info("broker fallback: broker is back; running recovery hooks %s", sorted(_recovery_hooks))
            run_recovery_hooks()
        return settings.BROKER_PROBE_INTERVAL
    handled = run_pollers()
    run_due_periodic()
    # A full batch means more may be due: poll again at once (still bounded by the batch size).
    return 0.0 if handled >= settings.REPLY_DB_POLL_BATCH else settings.REPLY_DB_POLL_INTERVAL


def _loop() -> None:
    while not _stop.is_set():
        try:
            pause = step()
        except Exception:  # never let the poller die
            logger.exception("broker fallback: poll failed")
            pause = settings.REPLY_DB_POLL_INTERVAL
        finally:
            close_old_connections()
            flush_call_metrics()  # the probe's breaker call, as Celery flushes after each task
            touch_heartbeat()
        _stop.wait(pause)


def touch_heartbeat() -> None:
    """This worker process is alive and its poller turns (broker up or down): ``WORKER_HEARTBEAT_FILE``."""
    path = settings.WORKER_HEARTBEAT_FILE
    if not path:
        return
    try:
        Path(path).touch()
    except OSError as e:  # a liveness aid must never stop the poller
        logger.warning("broker fallback: cannot touch %s: %s", path, e)


def warm_after_recovery() -> int:
    """Redis answers again: re-read every breaker's config row now (re-asserting staff overrides
    into the Redis store, which lost them if it restarted empty; the breakers reconcile their
    counts on their next call) and the degradation state, instead of waiting for the refresh
    intervals. Returns the number of breakers refreshed."""
    from reliability import degradation
    from reliability.breaker import registry
    from reliability.models import BreakerConfig

    names = list(BreakerConfig.objects.values_list("name", flat=True))
    for name in names:
        registry.apply_now(name)
    degradation.refresh_now()
    return len(names)


def start(**_: Any) -> bool:
    """Start this process's poller thread (once per process; again after a fork). Signal handler."""
    global _thread, _thread_pid
    if not settings.BROKER_FALLBACK_POLLER or _embedded_broker():
        return False
    with _lock:
        if _thread is not None and _thread_pid == os.getpid() and _thread.is_alive():
            return False
        _stop.clear()
        _thread = threading.Thread(target=_loop, name="broker-fallback", daemon=True)
        _thread_pid = os.getpid()
        _thread.start()
    return True


def stop(timeout: float = 5.0) -> None:
    _stop.set()
    thread = _thread
    if thread is not None and thread.is_alive():
        thread.join(timeout)


def _embedded_broker() -> bool:
    """The embedded filesystem broker is a folder: it cannot be "down" apart from the disk."""
    from celery import current_app

    return str(current_app.conf.broker_url or "").startswith(("hotelfs", "filesystem", "memory"))
