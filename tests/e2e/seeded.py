"""One migrated, seeded database per test process that every stack starts from.

A stack used to run ``migrate`` and ``seed_demo`` in two manage.py processes before it started
(several seconds each, on every stack of both runs). Now the first stack of a test process builds a
template — a PostgreSQL database on DATABASE_URL's server, or a SQLite file — and every stack gets a
copy: ``CREATE DATABASE … TEMPLATE`` (a file copy inside the server) or a copy of the file. What the
seed stores does not depend on a stack's ports (the fake's push URL and the ports live in the
environment, the demo tokens are fixed development values), so one seed serves every stack.
Stacks on a server of their own (``launch_stack(database_url=…)``) still migrate and seed themselves.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from drill.stack import Stack, drop_database, migrate_and_seed, throwaway_database

SQLITE_FILE = "hotelbot.sqlite3"  # hotelbot/settings/database.py: VAR_DIR / "hotelbot.sqlite3"


class SeededDatabases:
    def __init__(self) -> None:
        self._dir: Path | None = None
        self._postgres: dict[str, str] = {}  # server URL (database part dropped) -> template's name
        self._sqlite: Path | None = None
        self.seed_output = ""  # what seed_demo printed (the demo hotel's instance id)

    def prepare(self, stack: Stack, base_db_url: str) -> str:
        """Give ``stack`` a database of its own, migrated and seeded: on the PostgreSQL server of
        ``base_db_url`` if set (returns the new database's name, to drop), else a SQLite file in
        the stack's var dir (returns "")."""
        if base_db_url:
            server = urlunsplit(urlsplit(base_db_url)._replace(path="/postgres"))
            template = self._postgres.get(server)
            if template is None:
                template = f"hotelbot_e2e_seed_{uuid.uuid4().hex[:10]}"
                with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f'CREATE DATABASE "{template}"')
                self._postgres[server] = template
                self._seed(stack, DATABASE_URL=urlunsplit(urlsplit(server)._replace(path=f"/{template}")))
            stack.env["DATABASE_URL"], name = throwaway_database(base_db_url, template=template)
            return name
        if self._sqlite is None:
            var = self._workdir() / "var-sqlite"
            self._seed(stack, HOTELBOT_VAR_DIR=str(var))
            self._sqlite = var / SQLITE_FILE
        target = Path(stack.env["HOTELBOT_VAR_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._sqlite, target / SQLITE_FILE)  # closed cleanly: no -wal file left
        return ""

    def close(self) -> None:
        for server, template in self._postgres.items():
            drop_database(server, template)
        self._postgres.clear()
        self._sqlite = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _workdir(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="hotelbot-e2e-seed-"))
        return self._dir

    def _seed(self, stack: Stack, **overrides: str) -> None:
        work = self._workdir()
        (work / "prometheus").mkdir(exist_ok=True)
        env = {
            **stack.env,
            "HOTELBOT_VAR_DIR": str(work / "var"),
            "PROMETHEUS_MULTIPROC_DIR": str(work / "prometheus"),
            **overrides,
        }
        self.seed_output = migrate_and_seed(env)


#: The test process's templates (tests/e2e/conftest.py drops them when the session ends).
SEEDED = SeededDatabases()
