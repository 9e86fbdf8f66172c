"""hotelbot settings, driven by environment variables.

With no environment at all the project runs on the *embedded default*: SQLite in WAL mode, Django's
local-memory cache, a filesystem Celery broker and the fake providers on loopback. Setting
``DATABASE_URL``, ``REDIS_URL`` and ``CELERY_BROKER_URL`` switches to PostgreSQL (psycopg3 pool),
django-redis and a Redis broker. Every variable read here is listed in ``.env.example``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("HOTELBOT_VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as e:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from e


def env_int(name: str, default: int) -> int:
    return int(env_float(name, default))


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


# --- Core ----------------------------------------------------------------------------------------
# Off unless the environment turns it on: make run, deploy/Procfile.dev, the tests (pyproject's
# pytest env) and the drill/bench stacks set DJANGO_DEBUG=1 themselves (docs/security.md).
DEBUG = env_bool("DJANGO_DEBUG", False)
# The public development key stands in when none is set, so the settings still load and the system
# check (hotelbot/checks.py, hotelbot.E001) refuses to start without DEBUG, naming DJANGO_SECRET_KEY.
DEV_SECRET_KEY = "django-insecure-dev-only-key-do-not-use-in-production-0123456789abcdef"  # noqa: S105
SECRET_KEY = env_str("DJANGO_SECRET_KEY") or DEV_SECRET_KEY
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "console.apps.OpsAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "health_check",
    "django_prometheus",
    "django_celery_beat",
    "reliability",
    "messaging",
    "console",  # the staff console (admin, dashboard, API): the top floor, imports both apps
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "hotelbot.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (admin, the API docs' Swagger UI) straight from the apps: no collectstatic step
    # and no proxy rule needed, also under gunicorn with DEBUG off.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # The `database` breaker: while the database is down, requests that need it are answered 503
    # (JSON envelope, or a maintenance page for admin) before anything touches it.
    "reliability.middleware.DatabaseBreakerMiddleware",
    # Before sessions and CSRF: a refused request (switch off, read-only) touches nothing else.
    "reliability.middleware.DegradationMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "hotelbot.urls"
WSGI_APPLICATION = "hotelbot.wsgi.application"
ASGI_APPLICATION = "hotelbot.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ------------------------------------------------------------------------------------
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
# and it waits at most BREAKER_DB_TIMEOUT for a lock before the breaker falls back per process.
BREAKER_DB_ALIAS = "breaker"
BREAKER_DB_TIMEOUT = env_float("BREAKER_DB_TIMEOUT", 2.0)
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

# --- Cache ---------------------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_prometheus.cache.backends.redis.RedisCache",  # wraps django-redis
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "hotelbot"),
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": env_float("REDIS_SOCKET_CONNECT_TIMEOUT", 1.0),
                "SOCKET_TIMEOUT": env_float("REDIS_SOCKET_TIMEOUT", 1.0),
                # A cache outage must not take the site down; code that needs Redis for
                # correctness (breaker state) uses its own client and handles errors itself.
                "IGNORE_EXCEPTIONS": True,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache"}}

# --- Celery --------------------------------------------------------------------------------------
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
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Worker/beat publishes (sweeper, retries) retry briefly; request-path publishes never retry and
# use their own short timeouts (CELERY_REQUEST_PUBLISH_TIMEOUT below).
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
REPLY_SWEEP_INTERVAL = env_float("REPLY_SWEEP_INTERVAL", 15.0)
REPLY_DRAIN_INTERVAL = env_float("REPLY_DRAIN_INTERVAL", 5.0)
CELERY_BEAT_SCHEDULE = {
    "messaging.sweep_reply_jobs": {
        "task": "messaging.tasks.sweep_reply_jobs",
        "schedule": REPLY_SWEEP_INTERVAL,
    },
    "messaging.drain_provider_recovery": {
        "task": "messaging.tasks.drain_provider_recovery",
        "schedule": REPLY_DRAIN_INTERVAL,
    },
    "reliability.redrive_dead_letters": {
        "task": "reliability.tasks.redrive_dead_letters",
        "schedule": env_float("DLQ_REDRIVE_INTERVAL", 60.0),
    },
    "reliability.evaluate_degradation": {
        "task": "reliability.tasks.evaluate_degradation",
        "schedule": env_float("DEGRADATION_EVALUATE_INTERVAL", 15.0),
    },
    "messaging.purge_deferred_statuses": {
        "task": "messaging.tasks.purge_deferred_statuses",
        "schedule": 3600.0,
    },
    # The last full hour's reliability report, stored for admin (5 past every hour).
    "reliability.reliability_report_hourly": {
        "task": "reliability.tasks.reliability_report_hourly",
        "schedule": crontab(minute="5"),
    },
    # Records older than RETENTION_DAYS (closed dead letters, breaker events, reports, attempts).
    "reliability.purge_old_records": {
        "task": "reliability.tasks.purge_old_records",
        "schedule": crontab(minute="30", hour="3"),
    },
    # Health (issue 10): refresh the cached expensive checks and provider states, and the metrics.
    "reliability.health_monitor": {
        "task": "reliability.tasks.health_monitor",
        "schedule": 60.0,
    },
    # Alert staff (mail_admins) once per episode when a breaker stays open too long.
    "reliability.breaker_monitor": {
        "task": "reliability.tasks.breaker_monitor",
        "schedule": 120.0,
    },
    # Guests waiting longer than REPLY_SLA_SECONDS without any answer: mail staff once per job.
    "messaging.flag_reply_sla": {
        "task": "messaging.tasks.flag_reply_sla",
        "schedule": env_float("REPLY_SLA_CHECK_INTERVAL", 60.0),
    },
}

# --- Providers -----------------------------------------------------------------------------------
GREEN_API_URL = env_str("GREEN_API_URL", "http://127.0.0.1:8701")
GREEN_API_ID_INSTANCE = env_str("GREEN_API_ID_INSTANCE", "1101000001")
GREEN_API_TOKEN = env_str("GREEN_API_TOKEN", "test-token")
# Webhook authentication (docs/hotels.md): each hotel has its own token (hotel_create / hotel_connect /
# hotel_rotate_webhook_token) and URL /webhooks/green-api/<idInstance>/. The global token is only an
# explicit opt-in for single-hotel installs: when set, the legacy URL /webhooks/green-api/ accepts it
# for every instance (so it lets any holder post as any hotel). Empty by default in every mode.
GREEN_API_WEBHOOK_TOKEN = env_str("GREEN_API_WEBHOOK_TOKEN", "")
# Base URL Green API reaches this deployment at; the per-hotel webhook URLs are built from it.
HOTELBOT_PUBLIC_URL = env_str("HOTELBOT_PUBLIC_URL", "http://127.0.0.1:8000" if DEBUG else "")
# How long a rotated-out webhook token stays valid (Green API applies new settings within minutes).
WEBHOOK_TOKEN_GRACE_HOURS = env_float("WEBHOOK_TOKEN_GRACE_HOURS", 24.0)
# Seconds a process trusts its cached hotel credentials; also how long a revoked token can linger.
WEBHOOK_CREDENTIAL_CACHE_SECONDS = env_float("WEBHOOK_CREDENTIAL_CACHE_SECONDS", 30.0)
# Per process, at most one audit row per (token's hotel, claimed instance) refusal in this many seconds.
WEBHOOK_REFUSAL_AUDIT_INTERVAL = env_float("WEBHOOK_REFUSAL_AUDIT_INTERVAL", 60.0)
GREEN_API_CONNECT_TIMEOUT = env_float("GREEN_API_CONNECT_TIMEOUT", 3.0)
GREEN_API_READ_TIMEOUT = env_float("GREEN_API_READ_TIMEOUT", 10.0)
# Overall deadline of one Green API call (a trickling answer defeats the read timeout); it must be
# shorter than REPLY_JOB_LEASE so a send always ends before the job's lease can pass to another worker.
GREEN_API_DEADLINE = env_float("GREEN_API_DEADLINE", 15.0)
# Sends per second when draining replies parked while the breaker was open (Green API allows 50).
GREEN_API_SEND_RATE = env_float("GREEN_API_SEND_RATE", 20.0)
# Client-side pacing per instance and method, shared by all processes (reliability/ratelimit.py).
# Green API allows 50 sendMessage/s and 1 lastOutgoingMessages/s, counted as calls arrive. Slots are
# 1/rate apart, but a call delayed after its slot (scheduling, network) arrives closer to the next:
# with 20% headroom one call may arrive up to 250 ms late before a window holds more than the limit
# (with 10%, 111 ms: a loaded 2-core machine earned 429s).
GREEN_API_RATE_SEND_MESSAGE = env_float("GREEN_API_RATE_SEND_MESSAGE", 40.0)
GREEN_API_RATE_LAST_OUTGOING = env_float("GREEN_API_RATE_LAST_OUTGOING", 0.8)
# getSettings / setSettings calls/s per instance (limit: 1), used by hotel_connect.
GREEN_API_RATE_SETTINGS = env_float("GREEN_API_RATE_SETTINGS", 0.8)
# Longest wait for a slot; beyond it the call is refused at once ("not now") and the job reschedules.
GREEN_API_RATE_MAX_WAIT = env_float("GREEN_API_RATE_MAX_WAIT", 2.0)

DEEPSEEK_URL = env_str("DEEPSEEK_URL", "http://127.0.0.1:8702")
DEEPSEEK_API_KEY = env_str("DEEPSEEK_API_KEY", "sk-test")
DEEPSEEK_MODEL = env_str("DEEPSEEK_MODEL", "deepseek-flash")
DEEPSEEK_CONNECT_TIMEOUT = env_float("DEEPSEEK_CONNECT_TIMEOUT", 3.0)
DEEPSEEK_READ_TIMEOUT = env_float("DEEPSEEK_READ_TIMEOUT", 10.0)
# Overall deadline: DeepSeek trickles keep-alive blank lines that defeat read timeouts.
DEEPSEEK_DEADLINE = env_float("DEEPSEEK_DEADLINE", 20.0)
DEEPSEEK_MAX_TOKENS = env_int("DEEPSEEK_MAX_TOKENS", 400)
# GET /models (the health monitor's reachability check) at most this often, across processes.
DEEPSEEK_RATE_MODELS = env_float("DEEPSEEK_RATE_MODELS", 0.2)

FAKE_GREEN_API_PORT = env_int("FAKE_GREEN_API_PORT", 8701)
FAKE_DEEPSEEK_PORT = env_int("FAKE_DEEPSEEK_PORT", 8702)
FAKE_GREEN_API_WEBHOOK_URL = env_str(
    "FAKE_GREEN_API_WEBHOOK_URL", f"http://127.0.0.1:8000/webhooks/green-api/{GREEN_API_ID_INSTANCE}/"
)
# The demo hotel's webhook token (seed_demo gives it to the hotel, fake_providers pushes with it):
# a public development value, so only in DEBUG.
FAKE_GREEN_API_WEBHOOK_TOKEN = env_str(
    "FAKE_GREEN_API_WEBHOOK_TOKEN", "dev-demo-hotel-webhook-token" if DEBUG else ""
)

# --- Reply pipeline ------------------------------------------------------------------------------
REPLY_CONTEXT_TURNS = env_int("REPLY_CONTEXT_TURNS", 8)
REPLY_MAX_ATTEMPTS = env_int("REPLY_MAX_ATTEMPTS", 6)
REPLY_RETRY_BASE_DELAY = env_float("REPLY_RETRY_BASE_DELAY", 2.0)
REPLY_RETRY_MAX_DELAY = env_float("REPLY_RETRY_MAX_DELAY", 300.0)
REPLY_JOB_LEASE = env_float("REPLY_JOB_LEASE", 120.0)
REPLY_STALE_AFTER = env_float("REPLY_STALE_AFTER", 30.0)
# A new job no worker has claimed this many seconds after its publish is re-published once, by a
# check the beat process runs every REPLY_UNSEEN_CHECK_INTERVAL seconds (0: off) without the broker
# (reliability/watchers.py): a publish lost with its web process costs a guest seconds, not
# REPLY_STALE_AFTER. Keep the sum under 5 s.
REPLY_UNSEEN_AFTER = env_float("REPLY_UNSEEN_AFTER", 2.0)
REPLY_UNSEEN_CHECK_INTERVAL = env_float("REPLY_UNSEEN_CHECK_INTERVAL", 2.0)
# The sweeper re-publishes a job's task only after its last publish is stale: REPLY_STALE_AFTER x 2^n
# after the n-th re-publish in a row, at most this many seconds.
REPLY_REPUBLISH_MAX_SPACING = env_float("REPLY_REPUBLISH_MAX_SPACING", 600.0)
# Green API's outgoing journal can lag up to 2 min: wait that long before deciding an unknown send failed.
REPLY_RECONCILE_GRACE = env_float("REPLY_RECONCILE_GRACE", 120.0)
if not 0 < GREEN_API_DEADLINE < REPLY_JOB_LEASE:
    raise ImproperlyConfigured(
        f"GREEN_API_DEADLINE ({GREEN_API_DEADLINE}s) must be > 0 and shorter than REPLY_JOB_LEASE "
        f"({REPLY_JOB_LEASE}s): a send must end before its job's lease can pass to another worker"
    )
# A guest who has waited this long without any answer is flagged to staff by mail (once per job).
REPLY_SLA_SECONDS = env_float("REPLY_SLA_SECONDS", 300.0)
# The longest any layer (in-call retries, reply jobs) honours a provider's Retry-After, in seconds.
RETRY_AFTER_CAP = env_float("RETRY_AFTER_CAP", 900.0)
CONVERSATION_IDLE_HOURS = env_float("CONVERSATION_IDLE_HOURS", 24.0)

# --- DRF -----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "EXCEPTION_HANDLER": "hotelbot.exceptions.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Token first: an anonymous call then answers 401 with `WWW-Authenticate: Token` (not 403).
    # Integrations use a token (admin → Auth Token → Tokens, or `manage.py drf_create_token <user>`);
    # the browsable docs and staff in a browser use the admin session (with CSRF on writes).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": None,
    # Every API view is limited per client (user or token; anonymous by IP) with one budget for
    # reads (GET) and one for writes (console/api/policies.py), counted by the server-side
    # limiter (reliability/ratelimit.py: Redis, per process while Redis is down; not the cache).
    # A rate is "N/s", "N/min", "N/hour" or "N/day" (N at once, then spread); "off" disables it.
    "DEFAULT_THROTTLE_CLASSES": ["console.api.policies.ReliabilityThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "reliability_read": env_str("API_THROTTLE_READ", "600/min"),
        "reliability_write": env_str("API_THROTTLE_WRITE", "60/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "hotelbot API",
    "DESCRIPTION": "WhatsApp concierge bot for hotels: webhook intake and reliability operations "
    "(circuit breakers, dead letters, quarantined notifications). Authenticate with "
    "`Authorization: Token <key>` (staff users) or the admin session. Every error is "
    '`{"error": {"code", "message", "details", "request_id"}}` (429 and 503 with Retry-After).',
    "VERSION": "0.1.0",
    # Swagger UI and ReDoc from drf-spectacular-sidecar's static files: no CDN (offline and
    # CSP-locked deployments render the docs too).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAdminUser"],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "DeadLetterStatusEnum": "reliability.models.DeadLetter.Status",
        "DeadLetterKindEnum": "reliability.models.DeadLetter.Kind",
        "DeadLetterCategoryEnum": "reliability.models.DeadLetter.Category",
    },
}
# Dead letters one bulk retry through the API redrives at most (the oldest first).
API_BULK_RETRY_LIMIT = env_int("API_BULK_RETRY_LIMIT", 500)

# --- Static, i18n --------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise indexes it at start (collectstatic fills it)
WHITENOISE_USE_FINDERS = True  # serve from the apps' static dirs (collectstatic optional)
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Security (everything but TLS, which the proxy terminates; see README) ----------------------
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
# Kubernetes probes and the Prometheus scrape reach the pod over plain HTTP without the proxy's
# X-Forwarded-Proto: a redirect to https:// on the pod's port would fail every probe.
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]
# security.W021 (HSTS preload off) is silenced on purpose: preloading is a one-way commitment of the
# whole registrable domain (every subdomain, for months), the domain owner's decision, not this app's.
# A deployment that made it sets DJANGO_SECURE_HSTS_PRELOAD=true.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Logging -------------------------------------------------------------------------------------
# LOG_FORMAT=json: one JSON object per line (python-json-logger); console (default): a readable line.
# Every record carries request_id and passes the masking filter (hotelbot/logs.py) in both formats.
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env_str("LOG_FORMAT", "console").lower()
if LOG_FORMAT not in {"console", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: use console or json")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "hotelbot.logs.RequestIdFilter"},
        "mask": {"()": "hotelbot.logs.MaskingFilter"},
    },
    "formatters": {
        "console": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(process)d",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "mask"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# --- Metrics -------------------------------------------------------------------------------------
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

# --- Circuit breakers ----------------------------------------------------------------------------
# Shared breaker state: Redis (atomic Lua) when BREAKER_REDIS_URL is set, else the database
# (one locked transaction per decision); the database is also Redis's fallback, and per-process
# state the last resort. BREAKER_DB_STORE=false skips the database tier (Redis -> process).
BREAKER_DB_STORE = env_bool("BREAKER_DB_STORE", True)
BREAKER_REDIS_URL = env_str("BREAKER_REDIS_URL", REDIS_URL)
BREAKER_REDIS_PREFIX = env_str("BREAKER_REDIS_PREFIX", "hotelbot:cb")
# Admin edits of BreakerConfig reach every process within this many seconds.
BREAKER_CONFIG_REFRESH = env_float("BREAKER_CONFIG_REFRESH", 2.0)
# Write BreakerEvent rows from a background thread per process (off only in unit tests).
BREAKER_EVENT_WRITER = env_bool("BREAKER_EVENT_WRITER", True)

# --- Webhook intake: acknowledge, then quarantine (issue 6) --------------------------------------
# Bodies larger than this are quarantined from their first bytes without being read into memory.
WEBHOOK_MAX_BODY_BYTES = env_int("WEBHOOK_MAX_BODY_BYTES", 1024 * 1024)
# A larger body of up to this many bytes is still read to its end (and thrown away), so a client that
# writes its whole body before reading gets the 200 instead of a reset (gunicorn closes the connection).
WEBHOOK_DRAIN_MAX_BYTES = env_int("WEBHOOK_DRAIN_MAX_BYTES", 8 * 1024 * 1024)
# A dead letter keeps at most this many characters of the raw body.
DEAD_LETTER_RAW_MAX_CHARS = env_int("DEAD_LETTER_RAW_MAX_CHARS", 64 * 1024)
# Dead-letter redrive (reliability/dead_letters.py): backoff base and cap per letter, and how many
# automatic redrives before a letter is parked for a human.
DLQ_REDRIVE_BASE_DELAY = env_float("DLQ_REDRIVE_BASE_DELAY", 60.0)
DLQ_REDRIVE_MAX_DELAY = env_float("DLQ_REDRIVE_MAX_DELAY", 3600.0)
DLQ_MAX_REDRIVES = env_int("DLQ_MAX_REDRIVES", 5)
DLQ_REDRIVE_INTERVAL = env_float("DLQ_REDRIVE_INTERVAL", 60.0)
# Days the daily purge keeps closed dead letters, breaker events, stored reliability reports and
# finished reply jobs' delivery attempts (the audit log only goes with `dlq_purge --include-audit`).
RETENTION_DAYS = env_int("RETENTION_DAYS", 30)
if RETENTION_DAYS < 1:
    raise ImproperlyConfigured(f"RETENTION_DAYS must be at least 1 (got {RETENTION_DAYS})")
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
# Workers and beat keep kombu's connection timeout for their own (retried) connections.
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 4.0)

# --- Client-side rate limits ---------------------------------------------------------------------
# Shared pacing slots live in Redis; without it in the database (table reliability_ratelimitslot).
RATE_LIMIT_REDIS_URL = env_str("RATE_LIMIT_REDIS_URL", BREAKER_REDIS_URL)
RATE_LIMIT_REDIS_PREFIX = env_str("RATE_LIMIT_REDIS_PREFIX", "hotelbot:rl")
# The webhook's server-side limit per Green API instance (same store as the API's: Redis, per
# process while Redis is down). Generous: Green API delivers up to ~50/s per instance and pauses
# 60 s after any non-200, so a 429 delays that hotel's messages. "off" disables it.
WEBHOOK_RATE_LIMIT = env_str("WEBHOOK_RATE_LIMIT", "100/s")
WEBHOOK_RATE_BURST = env_int("WEBHOOK_RATE_BURST", 200)
# Slots a web process reserves per store call for an instance's webhook stream (spent without
# I/O until they run out or lapse): one Redis call per this many notifications. 1: every call.
WEBHOOK_RATE_LEASE = env_int("WEBHOOK_RATE_LEASE", 10)

# --- Health probes and monitor (issue 10) ---------------------------------------------------------
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
# How long the health monitor waits for Celery workers to answer a ping.
HEALTH_WORKER_PING_TIMEOUT = env_float("HEALTH_WORKER_PING_TIMEOUT", 1.0)
# The breaker monitor mails ADMINS when a breaker has been open longer than this (once per episode).
BREAKER_OPEN_ALERT_SECONDS = env_float("BREAKER_OPEN_ALERT_SECONDS", 600.0)
# Green API allows 1 getStateInstance/s per instance; the health monitor paces itself below that.
GREEN_API_RATE_STATE_INSTANCE = env_float("GREEN_API_RATE_STATE_INSTANCE", 0.8)

# --- Mail: staff alerts (dead replies, guests waiting past the SLA) -------------------------------
# Absolute links in alert mails are built from this (scheme, host and any path prefix, no trailing /).
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")


def parse_admins(raw: str) -> list[tuple[str, str]]:
    """``ADMINS="Ana Lima <ana@example.com>, ops@example.com"`` → Django's ``[(name, address)]``."""
    from email.utils import getaddresses

    admins: list[tuple[str, str]] = []
    for name, address in getaddresses([raw]):
        if not address or "@" not in address:
            if raw.strip():
                raise ImproperlyConfigured(f"ADMINS={raw!r}: every entry needs an address (Name <a@b>)")
            continue
        admins.append((name or address, address))
    return admins


def parse_email_url(url: str) -> dict[str, Any]:
    """``EMAIL_URL=smtp://user:password@host:587`` (``smtp+tls://`` STARTTLS, ``smtp+ssl://`` implicit
    TLS; ``console://`` and ``locmem://`` for the built-in backends) → Django's EMAIL_* settings."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    if parts.scheme == "console":
        return {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}
    if parts.scheme == "locmem":
        return {"EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend"}
    if parts.scheme not in {"smtp", "smtp+tls", "smtp+ssl"} or not parts.hostname:
        raise ImproperlyConfigured(
            f"EMAIL_URL: use smtp://, smtp+tls:// or smtp+ssl:// with a host ({url!r})"
        )
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": parts.hostname,
        "EMAIL_PORT": parts.port or {"smtp": 25, "smtp+tls": 587, "smtp+ssl": 465}[parts.scheme],
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_TLS": parts.scheme == "smtp+tls",
        "EMAIL_USE_SSL": parts.scheme == "smtp+ssl",
    }


ADMINS = parse_admins(env_str("ADMINS"))
MANAGERS = ADMINS
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "hotelbot <hotelbot@localhost>")
SERVER_EMAIL = env_str("SERVER_EMAIL", DEFAULT_FROM_EMAIL)
EMAIL_SUBJECT_PREFIX = env_str("EMAIL_SUBJECT_PREFIX", "[hotelbot] ")
EMAIL_TIMEOUT = env_float("EMAIL_TIMEOUT", 10.0)
if env_str("EMAIL_URL"):
    globals().update(parse_email_url(env_str("EMAIL_URL")))
elif env_str("EMAIL_HOST"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = env_str("EMAIL_HOST")
    EMAIL_PORT = env_int("EMAIL_PORT", 25)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
    EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
elif DEBUG:
    # make run: alert mails are printed by the worker/web process instead of going nowhere.
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
# --- Graceful degradation (issue 9) --------------------------------------------------------------
# Every process re-reads the degradation state (one primary-key SELECT) at most this often; between
# reads a switch lookup costs no I/O. Processes agree within about this many seconds.
DEGRADATION_REFRESH_SECONDS = env_float("DEGRADATION_REFRESH_SECONDS", 1.0)
# The rules must have asked for a lower level this long, without a break, before it goes down.
DEGRADATION_RECOVERY_SECONDS = env_float("DEGRADATION_RECOVERY_SECONDS", 60.0)
# Retry-After (seconds) of the 503s the degradation middleware answers.
DEGRADATION_RETRY_AFTER = env_float("DEGRADATION_RETRY_AFTER", 60.0)
# Moves to SEVERE or worse, and the recovery from them, are mailed to ADMINS (see Mail above).

# --- Secrets at rest: provider tokens encrypted in the database (issue 16) -----------------------
# Comma-separated Fernet keys, NEWEST FIRST: values are encrypted with the first and decrypted with
# any (add a new key in front, run `manage.py rotate_field_keys`, then `--verify`, then drop the old
# one). Kept apart from SECRET_KEY. Unset with DEBUG on: the public dev key (reliability/crypto.py);
# unset, malformed or the dev key without DEBUG: a system check error refuses to start. docs/secrets.md.
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS", "")
