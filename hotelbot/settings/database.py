"""Database: PostgreSQL (psycopg3 pool) from DATABASE_URL, else SQLite in WAL mode; the `database`
breaker's knobs; the breaker store's own alias; django-prometheus's wrapped engines."""

from __future__ import annotations

from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .base import VAR_DIR
from .env import env_float, env_int, env_str

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
        }
        _db["OPTIONS"].setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT", 3))
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
