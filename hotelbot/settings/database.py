"""Database: PostgreSQL (psycopg3 pool) from DATABASE_URL, else SQLite in WAL mode; statement and
lock timeouts by process role; the `database` breaker's knobs; the breaker store's own alias;
django-prometheus's wrapped engines."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .base import VAR_DIR
from .env import env_float, env_int, env_str

PROCESS_ROLES = ("web", "worker", "beat", "command")


def process_role(argv: Sequence[str], explicit: str = "") -> str:
    """This process's role: ``explicit`` (HOTELBOT_PROCESS_ROLE) when set, else read from the
    command line the way hotelbot/celery.py tells a worker from beat: gunicorn or runserver is
    ``web``, ``celery ... worker`` / ``celery ... beat`` are theirs, anything else (manage.py
    commands, migrations, the tests) is ``command``."""
    if explicit:
        if explicit not in PROCESS_ROLES:
            raise ImproperlyConfigured(
                f"HOTELBOT_PROCESS_ROLE must be one of {', '.join(PROCESS_ROLES)}, got {explicit!r}"
            )
        return explicit
    program, args = (argv[0] if argv else ""), set(argv[1:])  # a path: .../gunicorn, celery/__main__.py
    if "gunicorn" in program or "runserver" in args:
        return "web"
    if "celery" in program:
        for role in ("worker", "beat"):
            if role in args:
                return role
    return "command"


def session_options(*, statement_timeout: float, lock_timeout: float) -> str:
    """libpq ``options`` setting both timeouts (seconds; 0 = off) on every session."""
    return " ".join(
        f"-c {name}={max(0, round(seconds * 1000))}"
        for name, seconds in (("statement_timeout", statement_timeout), ("lock_timeout", lock_timeout))
    )


# Set by the Procfile, the k8s manifests and the systemd units; unset, read from the command line.
HOTELBOT_PROCESS_ROLE = process_role(sys.argv, env_str("HOTELBOT_PROCESS_ROLE"))
# PostgreSQL statement_timeout and lock_timeout (seconds, 0 = off) of this process's sessions, by
# role: a stuck query or a held lock makes a web request a 503 + Retry-After (database_busy) within
# seconds instead of holding a gunicorn worker; workers and beat allow longer work; commands
# (migrations, purges, the release step) run unbounded unless set.
DB_TIMEOUTS: dict[str, tuple[float, float]] = {
    "web": (env_float("DB_STATEMENT_TIMEOUT_WEB", 5.0), env_float("DB_LOCK_TIMEOUT_WEB", 2.0)),
    "worker": (env_float("DB_STATEMENT_TIMEOUT_WORKER", 60.0), env_float("DB_LOCK_TIMEOUT_WORKER", 10.0)),
    "command": (env_float("DB_STATEMENT_TIMEOUT_COMMAND", 0.0), env_float("DB_LOCK_TIMEOUT_COMMAND", 0.0)),
}
DB_TIMEOUTS["beat"] = DB_TIMEOUTS["worker"]

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    _db: dict[str, Any] = dict(dj_database_url.parse(DATABASE_URL))
    if _db["ENGINE"] == "django.db.backends.postgresql":
        # psycopg3's pool replaces persistent connections (CONN_MAX_AGE must be 0 with it).
        _db["CONN_MAX_AGE"] = 0
        # Every connection is checked before the pool hands it out, so connections the pool kept
        # across a PostgreSQL restart are replaced instead of failing the first requests after it:
        # by a poll of its socket (reliability/pgbackend), not by Django's CONN_HEALTH_CHECKS (an
        # empty query per checkout).
        _db["CONN_HEALTH_CHECKS"] = False
        _db.setdefault("OPTIONS", {})
        _db["OPTIONS"]["pool"] = {
            "min_size": env_int("DB_POOL_MIN_SIZE", 1),
            "max_size": env_int("DB_POOL_MAX_SIZE", 10),
            "timeout": env_float("DB_POOL_TIMEOUT", 5.0),
            # The pool retries a failed connection in the background with exponential backoff
            # (1, 2, 4, 8 ... s) for this long before it gives up; while a retry is pending, a
            # request waits for it. The default (5 min) leaves the pool asleep in a 30-60 s backoff
            # after an outage, so the first requests after PostgreSQL is back time out. Short: a
            # given-up attempt is simply restarted at once by the next request (the database
            # breaker sends at most one per DB_BREAKER_RECOVERY_TIMEOUT while it is down).
            "reconnect_timeout": env_float("DB_POOL_RECONNECT_TIMEOUT", 1.0),
            # A pooled connection is replaced after this many seconds (spreads server-side memory
            # growth and lets a failover or a pgbouncer restart be picked up), and closed after this
            # many idle seconds while the pool holds more than min_size.
            "max_lifetime": env_float("DB_POOL_MAX_LIFETIME", 1800.0),
            "max_idle": env_float("DB_POOL_MAX_IDLE", 300.0),
        }
        _db["OPTIONS"].setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT", 3))
        _statement, _lock = DB_TIMEOUTS[HOTELBOT_PROCESS_ROLE]
        _db["OPTIONS"]["options"] = (
            _db["OPTIONS"].get("options", "")
            + " "
            + session_options(statement_timeout=_statement, lock_timeout=_lock)
        ).strip()
    DATABASES = {"default": _db}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "hotelbot.sqlite3"),
            "OPTIONS": {
                # WAL lets the web process read while a worker writes; IMMEDIATE takes the write
                # lock at BEGIN so concurrent writers wait (busy timeout) instead of failing.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": env_float("SQLITE_BUSY_TIMEOUT", 20.0),
            },
            "TEST": {"NAME": env_str("SQLITE_TEST_NAME") or None},
        }
    }
# The `database` breaker (reliability/middleware.py, DatabaseBreakerMiddleware): after this many
# requests in a row fail because the database is unreachable (only connection-level errors count),
# requests that need it are answered 503 at once instead of each waiting for the connect/pool
# timeout; after DB_BREAKER_RECOVERY_TIMEOUT seconds one request probes (SELECT 1) and closes it.
DB_BREAKER_FAILURE_THRESHOLD = env_int("DB_BREAKER_FAILURE_THRESHOLD", 1)
DB_BREAKER_RECOVERY_TIMEOUT = env_float("DB_BREAKER_RECOVERY_TIMEOUT", 5.0)
# Retry-After (seconds) of every 503 a database problem causes (the webhook, the API, admin pages).
DB_RETRY_AFTER = env_float("DB_RETRY_AFTER", 30.0)
if DB_BREAKER_FAILURE_THRESHOLD < 1 or DB_BREAKER_RECOVERY_TIMEOUT <= 0:
    raise ImproperlyConfigured(
        "DB_BREAKER_FAILURE_THRESHOLD must be >= 1 and DB_BREAKER_RECOVERY_TIMEOUT > 0"
    )
_reconnect = DATABASES["default"].get("OPTIONS", {}).get("pool", {}).get("reconnect_timeout")
if _reconnect is not None and _reconnect >= DB_BREAKER_RECOVERY_TIMEOUT:
    raise ImproperlyConfigured(
        f"DB_POOL_RECONNECT_TIMEOUT ({_reconnect}s) must be shorter than DB_BREAKER_RECOVERY_TIMEOUT "
        f"({DB_BREAKER_RECOVERY_TIMEOUT}s): the breaker's probe must find the pool's last attempt given up"
    )
# Breaker state gets its own alias on the same database: each breaker decision is a short
# transaction on its own connection, never part of (or rolled back with) a caller's transaction,
# and it waits at most BREAKER_DB_TIMEOUT for a lock before the breaker falls back per process
# (environment: BREAKER_DB_STORE_TIMEOUT, formerly BREAKER_DB_TIMEOUT, a near-homonym of the
# database breaker's DB_BREAKER_* knobs).
BREAKER_DB_ALIAS = "breaker"
BREAKER_DB_TIMEOUT = env_float("BREAKER_DB_STORE_TIMEOUT", 2.0)
_breaker_db: dict[str, Any] = {
    **DATABASES["default"],
    "OPTIONS": dict(DATABASES["default"].get("OPTIONS", {})),
    "TEST": {"MIRROR": "default"},
}
if _breaker_db["ENGINE"] == "django.db.backends.postgresql":
    _millis = max(1, round(BREAKER_DB_TIMEOUT * 1000))
    _breaker_db["OPTIONS"]["options"] = (
        _breaker_db["OPTIONS"].get("options", "")
        + f" -c lock_timeout={_millis} -c statement_timeout={_millis}"
    ).strip()
    # One persistent connection per thread instead of a pool: a breaker decision is one short
    # transaction every few hundred calls, and a pool would keep sessions open after tests.
    _breaker_db["OPTIONS"].pop("pool", None)
    _breaker_db["OPTIONS"].setdefault("connect_timeout", max(1, round(BREAKER_DB_TIMEOUT)))
    _breaker_db["CONN_MAX_AGE"] = 60
    _breaker_db["CONN_HEALTH_CHECKS"] = True
elif _breaker_db["ENGINE"] == "django.db.backends.sqlite3":
    _breaker_db["OPTIONS"]["timeout"] = BREAKER_DB_TIMEOUT
DATABASES[BREAKER_DB_ALIAS] = _breaker_db
# django-prometheus wraps the real backends (query counts and latency per alias, errors); the
# configuration above was chosen on the real engine names, so the swap comes last.
_PROMETHEUS_DB_ENGINES = {
    "django.db.backends.postgresql": "reliability.pgbackend",  # django-prometheus's, pool checked by a poll
    "django.db.backends.sqlite3": "django_prometheus.db.backends.sqlite3",
}
for _alias in DATABASES.values():
    _alias["ENGINE"] = _PROMETHEUS_DB_ENGINES.get(_alias["ENGINE"], _alias["ENGINE"])
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
