"""Health probes and the monitor, and the Prometheus metrics of every process."""

from __future__ import annotations

import os
from pathlib import Path

from .env import env_float, env_int, env_str

# Every check answers within this many seconds, whatever its dependency does (a hung PostgreSQL,
# Redis or broker is reported as "did not answer within ..."): probes stay under 200 ms.
HEALTH_CHECK_TIMEOUT = env_float("HEALTH_CHECK_TIMEOUT", 0.15)
# Opens the detailed health URLs (/health/, /health/detailed/, /health/circuit-breakers/,
# /health/degradation/, /health/dlq/) to monitoring as `Authorization: Bearer <token>`; staff logged in
# to admin see them too. Empty: staff only. /health/live/ and /health/ready/ stay public (status only).
HEALTH_MONITORING_TOKEN = env_str("HEALTH_MONITORING_TOKEN", "")
# Expensive checks (worker ping, provider states) are cached this long; probes never call a
# provider while a cached answer exists (the health monitor task refreshes them every minute).
HEALTH_CACHE_SECONDS = env_float("HEALTH_CACHE_SECONDS", 30.0)
# A due reply job not picked up for this many seconds is "overdue"; above the count it fails.
HEALTH_REPLY_BACKLOG_SECONDS = env_float("HEALTH_REPLY_BACKLOG_SECONDS", 120.0)
HEALTH_REPLY_BACKLOG_MAX = env_int("HEALTH_REPLY_BACKLOG_MAX", 10)
# Pending dead letters above this count turn the dead-letter check into a warning.
HEALTH_DEAD_LETTER_MAX = env_int("HEALTH_DEAD_LETTER_MAX", 50)
# Disk (of VAR_DIR) and memory use in percent from which the checks warn.
HEALTH_DISK_MAX_PERCENT = env_float("HEALTH_DISK_MAX_PERCENT", 90.0)
HEALTH_MEMORY_MAX_PERCENT = env_float("HEALTH_MEMORY_MAX_PERCENT", 90.0)
# The instance-state check (green_api_instances) reads the states Green API pushes and asks
# getStateInstance of at most this many hotels per run: those known or asked longest ago first, so
# every hotel is asked within ceil(hotels / slice) runs of the health monitor (one a minute).
HEALTH_GREEN_API_PROBE_SLICE = max(1, env_int("HEALTH_GREEN_API_PROBE_SLICE", 50))
# getStateInstance calls in flight at once during a run (each paced per instance, 1/s at Green API).
HEALTH_GREEN_API_PROBE_CONCURRENCY = max(1, env_int("HEALTH_GREEN_API_PROBE_CONCURRENCY", 4))
# A run ends within this many seconds whatever Green API does (keep it under the monitor's 30 s
# wait): no call outlives it, and the calls not started by then are skipped and asked first next run.
HEALTH_GREEN_API_PROBE_BUDGET = env_float("HEALTH_GREEN_API_PROBE_BUDGET", 20.0)
# A state known (pushed or asked) longer ago than this counts as unknown: a warning, not an answer.
# Keep it above ceil(hotels / slice) minutes, or raise the slice.
HEALTH_GREEN_API_STATE_MAX_AGE = env_float("HEALTH_GREEN_API_STATE_MAX_AGE", 3600.0)
# How long the health monitor waits for Celery workers to answer a ping.
HEALTH_WORKER_PING_TIMEOUT = env_float("HEALTH_WORKER_PING_TIMEOUT", 1.0)

# PROMETHEUS_MULTIPROC_DIR (read by prometheus_client itself, at import): every process (gunicorn
# workers, Celery worker children) writes its samples there and /metrics aggregates them. Unset:
# one process's own metrics. CELERY_METRICS_PORT: the Celery worker also serves its pod's
# aggregate on this port (for a worker that shares no volume with the web; 0: off).
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR")
if PROMETHEUS_MULTIPROC_DIR:
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
else:  # set but empty (a copied .env.example): prometheus_client would take it as multiprocess mode
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
CELERY_METRICS_PORT = env_int("CELERY_METRICS_PORT", 0)
