"""Real processes for end-to-end tests: gunicorn, a Celery worker and both fakes (``drill.stack``).

Each test session gets its own database (a SQLite file, or a throwaway database on the PostgreSQL
server of DATABASE_URL), its own broker (a filesystem folder, or Redis DB 14 of CELERY_BROKER_URL's
server) and free ports, so it never disturbs the other tests or the developer's `make run`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from drill.stack import (  # noqa: F401 - re-exported for the e2e tests
    BIN,
    ROOT,
    Stack,
    base_env,
    drop_database,
    free_port,
    make_stack,
    throwaway_database,
    wait_http,
)
from tests.e2e.seeded import SEEDED


@pytest.fixture(scope="session", autouse=True)
def _seeded_databases() -> Iterator[None]:
    """Drops the template the stacks of this test process were copied from (tests/e2e/seeded.py)."""
    yield
    SEEDED.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with launch_stack(tmp_path_factory.mktemp("e2e")) as s:
        yield s


@contextlib.contextmanager
def launch_stack(
    tmp: Path,
    *,
    extra_env: dict[str, str] | None = None,
    database_url: str | None = None,
    worker_args: tuple[str, ...] = (),
) -> Iterator[Stack]:
    """Fakes, one Celery worker (2 processes), beat and gunicorn on their own database.

    ``extra_env`` overrides the environment (e.g. a throwaway Redis as cache, broker and breaker
    store); ``database_url``: use this database as is (a throwaway server) instead of a fresh
    database on DATABASE_URL's server."""
    tmp.mkdir(parents=True, exist_ok=True)
    env, web_url = base_env(tmp)
    db_name = ""
    base_db_url = os.environ.get("DATABASE_URL", "")
    if database_url:
        env["DATABASE_URL"] = database_url
    env.update(extra_env or {})
    own_broker = "CELERY_BROKER_URL" in (extra_env or {})
    if not own_broker and os.environ.get("CELERY_BROKER_URL", "").startswith("redis://"):
        env["CELERY_BROKER_URL"] = urlunsplit(urlsplit(os.environ["CELERY_BROKER_URL"])._replace(path="/14"))
        # A stopped worker requeues its unacked and countdown tasks; start from an empty broker.
        redis.Redis.from_url(env["CELERY_BROKER_URL"], socket_timeout=5).flushdb()
    s = make_stack(tmp, env, web_url)
    try:
        if database_url:
            s.setup_database()
        else:  # a copy of the run's migrated, seeded database
            db_name = SEEDED.prepare(s, base_db_url)
        s.start_fakes()
        s.start_worker(extra_args=worker_args)
        s.start_beat()
        s.start_web()
        yield s
    finally:
        s.stop_all()
        if db_name:
            drop_database(base_db_url, db_name)
        if os.environ.get("KEEP_E2E_LOGS"):
            shutil.copytree(s.logs, ROOT / "var" / "e2e-logs", dirs_exist_ok=True)
