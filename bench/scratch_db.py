"""A throwaway database alias holding only the breaker-state table (benchmarks and store tests).

``scratch_alias("sqlite", directory)`` registers a Django database alias on a new SQLite file in WAL
mode with IMMEDIATE transactions (the embedded default's settings); ``scratch_alias("postgresql")``
creates a throwaway database on the PostgreSQL server of ``DATABASE_URL`` (default
``postgres://postgres@127.0.0.1:5432/postgres``) and drops it afterwards. Either way several
processes (forked after the alias is registered) can share it. Needs a configured Django.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import dj_database_url
import psycopg

DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def postgres_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else DEFAULT_PG_URL


@contextlib.contextmanager
def scratch_alias(kind: Literal["sqlite", "postgresql"], directory: Path | None = None) -> Iterator[str]:
    from django.db import connections

    from reliability.models import BreakerState

    alias = f"scratch_{kind}_{uuid.uuid4().hex[:8]}"
    admin_url, dropped = "", ""
    with contextlib.ExitStack() as stack:
        if kind == "sqlite":
            folder = directory or Path(stack.enter_context(tempfile.TemporaryDirectory()))
            raw: dict[str, Any] = {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(folder / f"{alias}.sqlite3"),
                "OPTIONS": {
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                    "transaction_mode": "IMMEDIATE",
                    "timeout": 10.0,
                },
            }
        else:
            base = postgres_url()
            parts = urlsplit(base)
            name = f"{(parts.path.strip('/') or 'hotelbot')}_{alias}"[:63]
            admin_url = urlunsplit(parts._replace(path="/postgres"))
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            dropped = name
            raw = dict(dj_database_url.parse(urlunsplit(parts._replace(path=f"/{name}"))))
            raw["CONN_MAX_AGE"] = 0
        try:
            configured = connections.configure_settings(
                {"default": connections.settings["default"], alias: raw}
            )
            connections.settings[alias] = configured[alias]
            with connections[alias].schema_editor() as editor:
                editor.create_model(BreakerState)
            connections[alias].close()
            yield alias
        finally:
            with contextlib.suppress(Exception):
                connections[alias].close()
            connections.settings.pop(alias, None)
            with contextlib.suppress(AttributeError):
                delattr(connections._connections, alias)  # type: ignore[attr-defined]
            if dropped:
                with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{dropped}" WITH (FORCE)')
