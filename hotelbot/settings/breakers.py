"""Circuit breakers (shared state in Redis, the database or the process; admin edits' reach; alerts)
and the shared slots of client-side pacing."""

from __future__ import annotations

from .cache_redis import REDIS_URL
from .env import env_bool, env_float, env_str

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
# The breaker monitor mails ADMINS when a breaker has been open longer than this (once per episode).
BREAKER_OPEN_ALERT_SECONDS = env_float("BREAKER_OPEN_ALERT_SECONDS", 600.0)

# Shared pacing slots live in Redis; without it in the database (table reliability_ratelimitslot).
RATE_LIMIT_REDIS_URL = env_str("RATE_LIMIT_REDIS_URL", BREAKER_REDIS_URL)
RATE_LIMIT_REDIS_PREFIX = env_str("RATE_LIMIT_REDIS_PREFIX", "hotelbot:rl")
