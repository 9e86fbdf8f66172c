"""Mail: staff alerts (dead replies, guests waiting past the SLA, breakers, degradation) to ADMINS."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

from .base import DEBUG
from .env import env_bool, env_float, env_int, env_str

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
