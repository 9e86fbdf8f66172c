"""Cache: django-redis from REDIS_URL (a cache outage never takes the site down), else local memory."""

from __future__ import annotations

from .env import env_float, env_str

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
