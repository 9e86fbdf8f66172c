"""Security: cookies, TLS behind the proxy (redirect, HSTS) and the keys of secrets at rest."""

from __future__ import annotations

from .base import DEBUG
from .env import env_bool, env_int, env_list

# Everything but TLS, which the proxy terminates (docs/security.md).
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


# Comma-separated Fernet keys, NEWEST FIRST: values are encrypted with the first and decrypted with
# any (add a new key in front, run `manage.py rotate_field_keys`, then `--verify`, then drop the old
# one). Kept apart from SECRET_KEY. Unset with DEBUG on: the public dev key (reliability/crypto.py);
# unset, malformed or the dev key without DEBUG: a system check error refuses to start. docs/secrets.md.
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS", "")
