"""Graceful degradation: how fast processes agree on the level, the recovery hysteresis, Retry-After."""

from __future__ import annotations

from .env import env_float

# Every process re-reads the degradation state (one primary-key SELECT) at most this often; between
# reads a switch lookup costs no I/O. Processes agree within about this many seconds.
DEGRADATION_REFRESH_SECONDS = env_float("DEGRADATION_REFRESH_SECONDS", 1.0)
# The rules must have asked for a lower level this long, without a break, before it goes down.
DEGRADATION_RECOVERY_SECONDS = env_float("DEGRADATION_RECOVERY_SECONDS", 60.0)
# Retry-After (seconds) of the 503s the degradation middleware answers.
DEGRADATION_RETRY_AFTER = env_float("DEGRADATION_RETRY_AFTER", 60.0)
# Moves to SEVERE or worse, and the recovery from them, are mailed to ADMINS (settings/mail.py).
