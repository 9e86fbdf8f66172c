"""Celery: the broker (Redis/AMQP from CELERY_BROKER_URL, else the filesystem transport under
VAR_DIR), task defaults, request-path publishing and the workers' fallback while the broker is down."""

from __future__ import annotations

from typing import Any

from .base import VAR_DIR
from .env import env_bool, env_float, env_int, env_str

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL")
if CELERY_BROKER_URL:
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
        # kombu waits forever by default; a dead broker must not hang a web request.
        "socket_timeout": env_float("CELERY_BROKER_SOCKET_TIMEOUT", 3.0),
        "socket_connect_timeout": env_float("CELERY_BROKER_SOCKET_TIMEOUT", 3.0),
        # Longer than any countdown we schedule, or Redis redelivers delayed tasks in a loop.
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    }
else:
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "hotelfs://"  # kombu's filesystem transport, atomic (hotelbot/fsbroker.py)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),  # fanout (remote control); default is the CWD
        "store_processed": False,
        # kombu sleeps this long whenever a worker holds its prefetch limit (default 1 s: ~2 tasks/s).
        "polling_interval": env_float("CELERY_FILESYSTEM_POLLING_INTERVAL", 0.05),
    }
CELERY_TASK_ACKS_LATE = True
# The queue tasks go to and workers read (the default "celery"); tests sharing a broker use their own.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
# Workers keep Django's LOGGING (request ids, masking, LOG_FORMAT) instead of Celery's own handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes every database connection before and after each task, and in a prefork
# worker it closes the whole psycopg pool (celery.fixups.django): every task opened new PostgreSQL
# sessions, about two per guest message (docs/cost.md). The fixup is told not to (it would close them
# once in this many tasks); hotelbot/celery.py gives each task's connections back to the pool instead,
# as Django does after a request (close_old_connections: a broken connection is closed, and the pool
# checks each connection before handing it out). Forked pool processes still drop the parent's pool.
CELERY_DB_REUSE_MAX = 2**30
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Worker/beat publishes (sweeper, retries) retry briefly; request-path publishes never retry and
# use their own short timeouts (CELERY_REQUEST_PUBLISH_TIMEOUT below).
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2}

# Web requests publish reply tasks once, with this connect/socket timeout (seconds), no retries:
# a hung broker costs a request at most about this long; the sweeper publishes what was missed.
CELERY_REQUEST_PUBLISH_TIMEOUT = env_float("CELERY_REQUEST_PUBLISH_TIMEOUT", 0.05)
# The webhook's publish runs on a thread of its own after the commit, so Green API's answer does
# not wait for the broker (the sweeper publishes a job whose publish died with the process).
CELERY_REQUEST_PUBLISH_HANDOFF = env_bool("CELERY_REQUEST_PUBLISH_HANDOFF", True)
# Broker down (issue 9): each worker process probes the broker every BROKER_PROBE_INTERVAL seconds
# (one connection, BROKER_PROBE_TIMEOUT); while it is unreachable the worker takes due reply jobs
# straight from the database every REPLY_DB_POLL_INTERVAL seconds (at most REPLY_DB_POLL_BATCH per
# poll) and runs the beat schedule's interval entries itself (reliability/broker_fallback.py).
BROKER_FALLBACK_POLLER = env_bool("BROKER_FALLBACK_POLLER", True)
BROKER_PROBE_INTERVAL = env_float("BROKER_PROBE_INTERVAL", 5.0)
# Each worker pool process's poller thread touches this file on every turn (empty: off). The k8s
# worker liveness probe reads its age, so a worker is not restarted just because the broker is
# down (``celery inspect ping`` needs the broker) while it keeps answering from the database.
WORKER_HEARTBEAT_FILE = env_str("WORKER_HEARTBEAT_FILE", "")
BROKER_PROBE_TIMEOUT = env_float("BROKER_PROBE_TIMEOUT", 0.5)
REPLY_DB_POLL_INTERVAL = env_float("REPLY_DB_POLL_INTERVAL", 1.0)
REPLY_DB_POLL_BATCH = env_int("REPLY_DB_POLL_BATCH", 10)
# A worker's consuming connection (Redis broker): seconds each BRPOP waits for a task before asking
# again (kombu's polling_interval, 1 s by default; a task still arrives the moment it is published).
# Kept under CELERY_BROKER_SOCKET_TIMEOUT: closing the channel reads the BRPOP in flight
# (reliability/broker.py, WorkerConsumer).
CELERY_WORKER_CONSUMER = "reliability.broker:WorkerConsumer"
WORKER_BROKER_POLLING_INTERVAL = env_float("WORKER_BROKER_POLLING_INTERVAL", 2.5)
# Workers and beat keep kombu's connection timeout for their own (retried) connections.
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 4.0)
