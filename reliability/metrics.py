"""Every Prometheus metric of the reliability layer, declared once. Tests assert on deltas."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "hotelbot_dependency_requests_total",
    "Attempts to call an external dependency, by outcome (2xx, 4xx, 5xx, transport, deadline, rejected).",
    ["dependency", "outcome"],
)
HTTP_SECONDS = Histogram(
    "hotelbot_dependency_request_seconds",
    "Duration of one attempt to call an external dependency.",
    ["dependency"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30),
)
BREAKER_TRANSITIONS = Counter(
    "hotelbot_breaker_transitions_total", "Circuit breaker state changes.", ["breaker", "to_state"]
)
BREAKER_STATE = Gauge(
    "hotelbot_breaker_open", "1 while the breaker rejects calls (open or forced open), else 0.", ["breaker"]
)
REPLIES = Counter(
    "hotelbot_replies_total",
    "Guest messages finished, by result: done (AI reply sent), degraded (canned answer sent), "
    "dead (gave up), quarantined (the notification could not be processed).",
    ["result"],
)

# --- Dead letters / webhook quarantine (issue 6) ---
WEBHOOK_QUARANTINED = Counter(
    "hotelbot_webhook_quarantined_total",
    "Authenticated webhook notifications acknowledged with 200 but quarantined as dead letters, "
    "by reason category (too_large, not_json, wrong_type, too_long, unsafe_text, ...).",
    ["reason"],
)
RATE_LIMIT_CALLS = Counter(
    "hotelbot_rate_limit_total",
    "Client-side pacing decisions, by outcome (granted, denied) and store (redis, database, memory).",
    ["dependency", "outcome", "store"],
)
RATE_LIMIT_WAIT_SECONDS = Histogram(
    "hotelbot_rate_limit_wait_seconds",
    "Seconds a granted call waited for its slot.",
    ["dependency"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)

# --- Health (issue 10) ---
HEALTH_CHECK_SECONDS = Histogram(
    "health_check_duration_seconds",
    "Duration of one health check run (probe endpoints, manage.py health_check, the health monitor).",
    ["check"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.5, 1, 2.5, 5),
)
HEALTH_CHECK_STATUS = Gauge(
    "health_check_status",
    "Result of the last run of a health check in this process: 1 ok (or warning), 0 failing.",
    ["check"],
)

# --- Degradation (issue 9) ---
DEGRADATION_LEVEL = Gauge(
    "system_degradation_level",
    "Degradation level in force: 0 normal, 1 minor, 2 moderate, 3 severe, 4 critical.",
    multiprocess_mode="livemostrecent",
)
DEGRADATION_EVENTS = Counter(
    "degradation_events_total",
    "Changes of the degradation level or switches in force, by level before and after.",
    ["from", "to"],
)
