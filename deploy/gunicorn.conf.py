"""gunicorn settings for the real deployment (the TLS proxy sits in front)."""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
accesslog = "-"
# gunicorn 25+ opens a control socket at one per-user path ($HOME/.gunicorn/gunicorn.ctl): several
# instances on a host (make run, the drill, tests) would take it from each other. Unused here.
control_socket_disable = True


# --- Prometheus multiprocess mode (reliability/observability.py) ----------------------------------
# Every worker writes its samples to PROMETHEUS_MULTIPROC_DIR and /metrics aggregates the directory.
def _prune_dead_files(folder: str) -> None:
    """Remove the files of processes that no longer exist (a live process's files are never touched,
    so a directory shared with Celery workers is safe)."""
    import contextlib
    import re
    from pathlib import Path

    for file in Path(folder).glob("*.db"):
        match = re.search(r"_(\d+)\.db$", file.name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
        except PermissionError:
            pass


def on_starting(server: object) -> None:
    # Django's system checks before any worker starts: unsafe settings without DEBUG (the dev
    # SECRET_KEY, ALLOWED_HOSTS '*', ...) stop the master with exit status 1, naming the variable.
    from hotelbot.checks import startup_checks_or_exit

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hotelbot.settings")
    startup_checks_or_exit("gunicorn")
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        _prune_dead_files(folder)


def child_exit(server: object, worker: object) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


# --- a worker's handed-off publishes leave with it (reliability/broker.py hand_off) ----------------
def worker_exit(server: object, worker: object) -> None:
    """Runs in the worker as it leaves after a graceful stop (SIGTERM, a max_requests restart, a
    HUP reload): the reply publishes its hand-off thread still holds go out first, each bounded by
    CELERY_REQUEST_PUBLISH_TIMEOUT and all within HANDOFF_DRAIN_SECONDS (< graceful_timeout). A
    worker that never published has nothing to wait for (the module is not even imported)."""
    import sys

    broker = sys.modules.get("reliability.broker")
    if broker is not None and not broker.handoff_drain():
        worker.log.warning("reply publishes still queued at exit are left to the sweeper")  # type: ignore[attr-defined]
