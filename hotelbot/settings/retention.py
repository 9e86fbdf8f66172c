"""Retention: how long each kind of record is kept before the daily purge deletes it (docs/operations.md).

Each value is in days (at least 1). The guests' personal data (messages with their reply jobs,
conversations, guests without messages) is kept ``RETENTION_MESSAGES_DAYS`` unless the hotel sets
its own (``Hotel.guest_data_retention_days``). Rows still needed (a reply on its way, an open dead
letter's job and message, a conversation with recent messages) are never deleted.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .env import env_int

RETENTION_MESSAGES_DAYS = env_int("RETENTION_MESSAGES_DAYS", 180)
RETENTION_DELIVERY_ATTEMPTS_DAYS = env_int("RETENTION_DELIVERY_ATTEMPTS_DAYS", 30)
RETENTION_DEAD_LETTERS_DAYS = env_int("RETENTION_DEAD_LETTERS_DAYS", 30)
RETENTION_AUDIT_DAYS = env_int("RETENTION_AUDIT_DAYS", 365)
RETENTION_BREAKER_EVENTS_DAYS = env_int("RETENTION_BREAKER_EVENTS_DAYS", 90)
RETENTION_REPORTS_DAYS = env_int("RETENTION_REPORTS_DAYS", 400)
# Rows one purge transaction deletes (each batch is its own short transaction, keyset-bounded).
RETENTION_BATCH_SIZE = env_int("RETENTION_BATCH_SIZE", 1000)

for _name in (
    "RETENTION_MESSAGES_DAYS",
    "RETENTION_DELIVERY_ATTEMPTS_DAYS",
    "RETENTION_DEAD_LETTERS_DAYS",
    "RETENTION_AUDIT_DAYS",
    "RETENTION_BREAKER_EVENTS_DAYS",
    "RETENTION_REPORTS_DAYS",
    "RETENTION_BATCH_SIZE",
):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1 (got {globals()[_name]})")
