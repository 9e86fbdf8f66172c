"""Per-worker services for ``pytest -n N`` (pytest-xdist), set before Django reads its settings.

pytest-django gives each worker its own PostgreSQL test database (``test_<name>_1``, ...; SQLite's
stays in each worker's memory, see below), but the settings also name Redis databases (cache,
breakers, pacing; the Celery broker) and the var dir that holds the embedded filesystem broker: two
workers sharing them would consume each other's tasks and flush each other's keys. Worker ``gwN``
therefore gets ``HOTELBOT_VAR_DIR/gwN`` and every Redis URL of the environment moved up by
``N * span`` databases (``span``: how many databases the run uses; e.g. REDIS_URL /8 and
CELERY_BROKER_URL /9: gw0 8 and 9, gw1 10 and 11). Databases 14 and 15 belong to the e2e stacks; a
worker that would reach them stops with a message instead.

A conftest is imported after pytest-django has loaded the settings, so ``tests/conftest.py`` names
this module in ``PYTEST_PLUGINS`` when it starts workers: each worker imports it while parsing its
command line, before any ``pytest_load_initial_conftests`` hook. Workers get the ``sys.path`` the
controller's interpreter started with, which holds the project folder under ``python -m pytest``
(the Makefile's way) but not under the ``pytest`` script.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REDIS_URL_VARIABLES = ("REDIS_URL", "CELERY_BROKER_URL", "BREAKER_REDIS_URL", "RATE_LIMIT_REDIS_URL")
FIRST_RESERVED_DB = 14  # the e2e stacks' broker databases (tests/e2e)
DEFAULT_VAR_DIR = Path(__file__).resolve().parent.parent / "var"


def _redis_db(url: str) -> int | None:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return None
    return int(parts.path.strip("/") or 0)


def worker_environment(environ: dict[str, str] | os._Environ[str], worker: str) -> dict[str, str]:
    """The variables worker ``worker`` ("gw3") overrides, computed from the run's ``environ``."""
    index = int(worker.removeprefix("gw"))
    base_var = Path(environ.get("HOTELBOT_VAR_DIR") or DEFAULT_VAR_DIR)
    changed = {"HOTELBOT_VAR_DIR": str(base_var / worker)}
    # SQLite's test database stays in each worker's memory: pytest-django would otherwise suffix a file
    # name onto the NAME of a backend it does not recognise (django_prometheus's sqlite3 wrapper).
    if not environ.get("SQLITE_TEST_NAME"):
        changed["SQLITE_TEST_NAME"] = ":memory:"
    urls = {name: environ[name] for name in REDIS_URL_VARIABLES if environ.get(name)}
    dbs = {name: db for name, url in urls.items() if (db := _redis_db(url)) is not None}
    if dbs:
        span = max(dbs.values()) - min(dbs.values()) + 1
        for name, db in dbs.items():
            moved = db + index * span
            if moved >= FIRST_RESERVED_DB:
                raise SystemExit(
                    f"pytest worker {worker}: {name} would move to Redis database {moved}; 14 and 15 "
                    "belong to the e2e stacks. Run fewer workers or start the URLs at a lower database."
                )
            changed[name] = urlunsplit(urlsplit(urls[name])._replace(path=f"/{moved}"))
    return changed


_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    os.environ.update(worker_environment(os.environ, _WORKER))
