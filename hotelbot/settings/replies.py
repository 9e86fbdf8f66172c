"""The reply pipeline: attempts and backoff, the job lease, lost-task recovery (stale, unseen),
the send journal's reconcile grace, the drain of replies parked by an open breaker, the guests' SLA."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .env import env_float, env_int
from .providers import GREEN_API_DEADLINE

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
# One answer for a burst (docs/handoff.md): a guest message is answered once the guest has been
# quiet this many seconds (each new message restarts the wait and is answered in the same reply),
# and at the latest REPLY_BURST_MAX_SECONDS after the burst's first message. 0 turns bursts off.
REPLY_BURST_QUIET_SECONDS = env_float("REPLY_BURST_QUIET_SECONDS", 3.0)
REPLY_BURST_MAX_SECONDS = env_float("REPLY_BURST_MAX_SECONDS", 15.0)
if REPLY_BURST_QUIET_SECONDS < 0 or REPLY_BURST_MAX_SECONDS < REPLY_BURST_QUIET_SECONDS:
    raise ImproperlyConfigured(
        f"REPLY_BURST_QUIET_SECONDS ({REPLY_BURST_QUIET_SECONDS}s) must be >= 0 and at most "
        f"REPLY_BURST_MAX_SECONDS ({REPLY_BURST_MAX_SECONDS}s)"
    )

# Sends per second when draining replies parked while the breaker was open (Green API allows 50);
# not GREEN_API_RATE_SEND_MESSAGE, the pacing of every sendMessage call. Environment: REPLY_DRAIN_RATE
# (formerly GREEN_API_SEND_RATE, still read with a hotelbot.W010 warning).
GREEN_API_SEND_RATE = env_float("REPLY_DRAIN_RATE", 20.0)
