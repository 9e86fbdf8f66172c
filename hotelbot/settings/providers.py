"""Providers: Green API and DeepSeek (endpoints, credentials of the demo hotel, timeouts, deadlines,
client-side pacing per method) and the fake providers the demo and the drills run on."""

from __future__ import annotations

from .base import DEBUG
from .env import env_bool, env_float, env_int, env_str

GREEN_API_URL = env_str("GREEN_API_URL", "http://127.0.0.1:8701")
GREEN_API_ID_INSTANCE = env_str("GREEN_API_ID_INSTANCE", "1101000001")
GREEN_API_TOKEN = env_str("GREEN_API_TOKEN", "test-token")
GREEN_API_CONNECT_TIMEOUT = env_float("GREEN_API_CONNECT_TIMEOUT", 3.0)
GREEN_API_READ_TIMEOUT = env_float("GREEN_API_READ_TIMEOUT", 10.0)
# Overall deadline of one Green API call (a trickling answer defeats the read timeout); it must be
# shorter than REPLY_JOB_LEASE so a send always ends before the job's lease can pass to another worker.
GREEN_API_DEADLINE = env_float("GREEN_API_DEADLINE", 15.0)
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
# Green API allows 1 getStateInstance/s per instance; the health monitor paces itself below that.
GREEN_API_RATE_STATE_INSTANCE = env_float("GREEN_API_RATE_STATE_INSTANCE", 0.8)

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

# A hotel's staff webhook (Hotel.staff_webhook_url, docs/handoff.md): each POST ends within this many
# seconds (connect, send, answer); a failed one is tried again by a later run of the staff alerts.
STAFF_WEBHOOK_TIMEOUT = env_float("STAFF_WEBHOOK_TIMEOUT", 5.0)
# Against SSRF (reliability/egress.py): without DEBUG a staff webhook URL must be https and its host
# resolve to public addresses only (checked at save and at each POST); this setting lets it reach
# private, loopback or link-local ones (an integration inside the deployment's own network).
# DEBUG (development, tests, the demo) keeps http and local addresses allowed.
STAFF_WEBHOOK_ALLOW_PRIVATE = env_bool("STAFF_WEBHOOK_ALLOW_PRIVATE", DEBUG)
STAFF_WEBHOOK_ALLOW_HTTP = DEBUG

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
