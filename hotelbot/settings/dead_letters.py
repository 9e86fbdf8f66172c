"""Dead letters: raw body bound, automatic redrive backoff (their retention: settings/retention.py)."""

from __future__ import annotations

from .env import env_float, env_int

# A dead letter keeps at most this many characters of the raw body.
DEAD_LETTER_RAW_MAX_CHARS = env_int("DEAD_LETTER_RAW_MAX_CHARS", 64 * 1024)
# Dead-letter redrive (reliability/dead_letters/): backoff base and cap per letter, and how many
# automatic redrives before a letter is parked for a human.
DLQ_REDRIVE_BASE_DELAY = env_float("DLQ_REDRIVE_BASE_DELAY", 60.0)
DLQ_REDRIVE_MAX_DELAY = env_float("DLQ_REDRIVE_MAX_DELAY", 3600.0)
DLQ_MAX_REDRIVES = env_int("DLQ_MAX_REDRIVES", 5)
DLQ_REDRIVE_INTERVAL = env_float("DLQ_REDRIVE_INTERVAL", 60.0)
