"""Quick checks every few seconds in the beat process, without a broker round trip.

Beat runs its schedule by publishing tasks: each run is a publish, a worker's prefetch, a task with
its database connection handling and an ack. That is fine every 15 s and too dear every 2 s (issue
18 wants web + worker + beat at most 3 ms of CPU per second while idle). A check that must run that
often and costs one indexed query (the messaging app registers "re-publish reply jobs no worker has
seen", replies.reply_jobs_republish_unseen) runs here instead: on one daemon thread of the beat
process (there is exactly one beat per deployment), started by Celery's ``beat_init`` signal, each
check every ``interval()`` seconds. The thread sleeps between runs (no busy loop) and keeps its
database connection between them (one connection of the beat process; returning it to the pool and
taking it back on every run cost about as much as the check), dropping it after a failure.

This module knows check *names*, never the domain: apps register theirs in ``ready``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import close_old_connections

logger = logging.getLogger(__name__)

#: Seconds the thread sleeps when no check is enabled (it looks again: settings may be overridden).
IDLE_PAUSE = 60.0


@dataclass(slots=True)
class Watch:
    name: str
    #: One run; returns how many items it acted on (logged when not zero).
    run: Callable[[], int]
    #: Seconds between runs (read on every turn; 0 or less: off).
    interval: Callable[[], float]
    next_at: float = field(default=0.0)


_watches: dict[str, Watch] = {}
_stop = threading.Event()
_lock = threading.Lock()
_thread: threading.Thread | None = None


def register_watch(name: str, run: Callable[[], int], *, interval: Callable[[], float]) -> None:
    """Run ``run()`` every ``interval()`` seconds in the beat process (apps call this in ``ready``)."""
    _watches[name] = Watch(name=name, run=run, interval=interval)


def run_due(now: float | None = None) -> float:
    """Run every watch that is due; returns the seconds until the next one is."""
    now = time.monotonic() if now is None else now
    pause = IDLE_PAUSE
    for watch in list(_watches.values()):
        interval = watch.interval()
        if interval <= 0:
            continue
        if watch.next_at <= now:
            watch.next_at = now + interval
            try:
                acted = watch.run()
            except Exception as e:  # a failing check (database away) must not end the thread
                logger.warning("watch %s failed: %s: %s", watch.name, type(e).__name__, str(e)[:200])
                close_old_connections()  # a broken connection is dropped; the next run opens one
            else:
                if acted:
                    logger.info("watch %s acted on %d item(s)", watch.name, acted)
        pause = min(pause, max(0.0, watch.next_at - now))
    return pause


def _loop() -> None:
    while not _stop.is_set():
        try:
            pause = run_due()
        except Exception:  # never let the thread die (e.g. dropping a broken connection failed)
            logger.exception("watch thread turn failed")
            pause = 1.0
        _stop.wait(pause)


def start(**_: Any) -> bool:
    """Start the watch thread of this process (Celery's ``beat_init``); once per process."""
    global _thread
    with _lock:
        if not _watches or (_thread is not None and _thread.is_alive()):
            return False
        _stop.clear()
        _thread = threading.Thread(target=_loop, name="beat-watchers", daemon=True)
        _thread.start()
    return True


def stop(timeout: float = 5.0) -> None:
    _stop.set()
    thread = _thread
    if thread is not None and thread.is_alive():
        thread.join(timeout)
