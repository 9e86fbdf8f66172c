"""Metrics exposition across processes: the /metrics view, the multiprocess directory, Celery.

Under gunicorn (several workers) and Celery (prefork children) every process is its own Python
interpreter with its own counters. With ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus_client keeps
each process's samples in memory-mapped files in that directory, and a scrape aggregates them
(:func:`scrape_registry`). The chosen topology:

* **Same host or shared volume (the default, ``make run``):** web and workers write to one
  directory and the web's ``/metrics`` shows everything, worker-side provider calls included.
  One scrape target, nothing else to run, and the numbers cannot be double counted.
* **Worker in another pod (k8s):** each pod has its own directory (an ``emptyDir``); the Celery
  worker's main process serves its children's aggregate on ``CELERY_METRICS_PORT`` (started on
  ``worker_ready``), scraped as a second target. The dead-letter gauge is served by the web only.

Stale files: a counter file of a process that has exited must stay (its counts are part of the
totals) until the deployment restarts; ``make run`` wipes the directory before starting, and
gunicorn's ``on_starting`` and the worker's ``celeryd_init`` remove the files of processes that no
longer exist (never a live process's files, so a shared directory is safe). A process that exits
is marked dead (gunicorn ``child_exit``, Celery ``worker_process_shutdown``), so its live gauges
stop counting.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from reliability.breaker.circuit import flush_call_metrics
from reliability.metrics import SCRAPE_TIME

logger = logging.getLogger(__name__)

_PID_FILE = re.compile(r"_(\d+)\.db$")


def multiproc_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune_dead_files(path: str | None = None) -> int:
    """Remove the files of processes that no longer exist; returns how many."""
    folder = Path(path or multiproc_dir())
    if not folder.is_dir():
        return 0
    removed = 0
    for file in folder.glob("*.db"):
        match = _PID_FILE.search(file.name)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
                removed += 1
    return removed


def scrape_registry(*, include_dead_letters: bool = True) -> CollectorRegistry:
    """The registry a scrape renders: every process's files in multiprocess mode, else this one's."""
    if not multiproc_dir():
        return REGISTRY  # the scrape-time collectors are registered in it (reliability.apps)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    if include_dead_letters:  # the counts of rows (dead letters, guests waiting): the web only
        for collector in SCRAPE_TIME:
            registry.register(collector)
    return registry


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``/metrics``: Prometheus text format (flushes this process's buffered breaker metrics first)."""
    flush_call_metrics()
    return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)


# --- Celery --------------------------------------------------------------------------------------
def _on_celeryd_init(**_: Any) -> None:
    if multiproc_dir():
        removed = prune_dead_files()
        if removed:
            logger.info("metrics: removed %d files of exited processes", removed)


def _on_worker_ready(**_: Any) -> None:
    port = settings.CELERY_METRICS_PORT
    if not port:
        return
    from prometheus_client import start_http_server

    start_http_server(port, registry=scrape_registry(include_dead_letters=False))
    logger.info("metrics: Celery worker exporter on port %d", port)


def _on_task_postrun(**_: Any) -> None:
    flush_call_metrics()


def _on_process_shutdown(**_: Any) -> None:
    flush_call_metrics()
    if multiproc_dir():
        multiprocess.mark_process_dead(os.getpid())


def connect_celery_signals() -> None:
    """Infrastructure signals (``ReliabilityConfig.ready``); they fire only in Celery processes."""
    from celery.signals import celeryd_init, task_postrun, worker_process_shutdown, worker_ready

    celeryd_init.connect(_on_celeryd_init, weak=False)
    worker_ready.connect(_on_worker_ready, weak=False)
    task_postrun.connect(_on_task_postrun, weak=False)
    worker_process_shutdown.connect(_on_process_shutdown, weak=False)
