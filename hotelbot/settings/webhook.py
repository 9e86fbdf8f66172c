"""Webhook intake: authentication (per-hotel tokens, the public URL), body bounds and the server-side
rate limit per Green API instance."""

from __future__ import annotations

from .base import DEBUG
from .env import env_float, env_int, env_str

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
# Bodies larger than this are quarantined from their first bytes without being read into memory.
WEBHOOK_MAX_BODY_BYTES = env_int("WEBHOOK_MAX_BODY_BYTES", 1024 * 1024)
# A larger body of up to this many bytes is still read to its end (and thrown away), so a client that
# writes its whole body before reading gets the 200 instead of a reset (gunicorn closes the connection).
WEBHOOK_DRAIN_MAX_BYTES = env_int("WEBHOOK_DRAIN_MAX_BYTES", 8 * 1024 * 1024)
# The webhook's server-side limit per Green API instance (same store as the API's: Redis, per
# process while Redis is down). Generous: Green API delivers up to ~50/s per instance and pauses
# 60 s after any non-200, so a 429 delays that hotel's messages. "off" disables it.
WEBHOOK_RATE_LIMIT = env_str("WEBHOOK_RATE_LIMIT", "100/s")
WEBHOOK_RATE_BURST = env_int("WEBHOOK_RATE_BURST", 200)
# Slots a web process reserves per store call for an instance's webhook stream (spent without
# I/O until they run out or lapse): one Redis call per this many notifications. 1: every call.
WEBHOOK_RATE_LEASE = env_int("WEBHOOK_RATE_LEASE", 10)
