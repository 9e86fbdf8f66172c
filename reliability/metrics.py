"""Every Prometheus metric of the reliability layer, declared once. Tests assert on deltas."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

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
    "hotelbot_breaker_open",
    "1 while the breaker rejects calls (open or forced open), else 0.",
    ["breaker"],
    multiprocess_mode="livemostrecent",
)
REPLIES = Counter(
    "hotelbot_replies_total",
    "Guest messages finished, by result: done (AI reply sent), degraded (canned answer sent), "
    "dead (gave up), quarantined (the notification could not be processed).",
    ["result"],
)
REPLY_BURSTS_MERGED = Counter(
    "hotelbot_reply_bursts_merged_total",
    "Guest messages whose answer was merged into the answer to the guest's next message (one reply "
    "for a burst written within REPLY_BURST_QUIET_SECONDS): a reply, a DeepSeek call and a send saved.",
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
RATE_LIMIT_INBOUND = Counter(
    "hotelbot_inbound_rate_limit_total",
    "Server-side rate-limit decisions on incoming requests, by scope (reliability_read, "
    "reliability_write: the API per client; webhook: per Green API instance), outcome (allowed, "
    "limited: answered 429) and store (redis, memory: per process, Redis down or not configured).",
    ["scope", "outcome", "store"],
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
# The seeds' counter (exported as health_check_total): their Grafana success rate is
# sum(rate(health_check_total{status="success"})) / sum(rate(health_check_total)).
HEALTH_CHECKS = Counter(
    "health_check",
    "Health check runs, by check and status: success (ok or warning, as health_check_status 1) or "
    "failure (probe endpoints, manage.py health_check, the health monitor).",
    ["check", "status"],
)
HEALTH_CHECK_STATUS = Gauge(
    "health_check_status",
    "Result of the last run of a health check: 1 ok (or warning), 0 failing (the most recent run "
    "of any live process).",
    ["check"],
    multiprocess_mode="livemostrecent",
)
WHATSAPP_NOT_AUTHORIZED = Gauge(
    "hotelbot_whatsapp_instances_not_authorized",
    "Hotels whose Green API instance is known not to be 'authorized' (pushed by Green API or asked "
    "by the instance-state check, within HEALTH_GREEN_API_STATE_MAX_AGE): they cannot answer any guest.",
    multiprocess_mode="livemostrecent",
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

# --- Seeds' metric names (issue 10) ---
# The names the seed project's dashboards and alerts use, beside ours. Labels are bounded: breaker
# and dependency names are a handful of constants in code ("green_api", "deepseek", ...), results
# and outcomes small fixed sets. Breaker call metrics are buffered per breaker in the calling
# process and written in batches (reliability/breaker/circuit.py): at most BREAKER_METRICS_EVERY
# calls or about a second behind, flushed after every Celery task and before every scrape.
CIRCUIT_BREAKER_REQUESTS = Counter(
    "circuit_breaker_requests_total",
    "Calls through a circuit breaker, by result: success, failure (counted against the breaker), "
    "rejected (refused without calling, breaker open).",
    ["breaker", "result"],
)
#: Values of ``circuit_breaker_state``.
BREAKER_STATE_CODES: dict[str, int] = {
    "closed": 0,
    "open": 1,
    "half_open": 2,
    "forced_open": 3,
    "disabled": 4,
    "metrics_only": 5,
}
CIRCUIT_BREAKER_STATE = Gauge(
    "circuit_breaker_state",
    "Circuit breaker state: 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled, 5 metrics only.",
    ["breaker"],
    multiprocess_mode="livemostrecent",
)
CIRCUIT_BREAKER_FAILURES = Counter(
    "circuit_breaker_failures_total",
    "Calls through a circuit breaker that counted as failures (timeouts, connection errors, 5xx, 429).",
    ["breaker"],
)
CIRCUIT_BREAKER_RESPONSE_TIME = Histogram(
    "circuit_breaker_response_time",
    "Seconds a call admitted by a circuit breaker took (successes and failures).",
    ["breaker"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30),
)
RETRY_ATTEMPTS = Counter(
    "retry_attempts_total",
    "In-call retry decisions per dependency, by outcome: retried (a retry was scheduled), recovered "
    "(a retry succeeded), or why it gave up (not_transient, attempts_exhausted, deadline, "
    "budget_exhausted, retry_after_too_long).",
    ["dependency", "outcome"],
)
RETRY_DELAY = Histogram(
    "retry_delay_seconds",
    "Seconds slept before an in-call retry (backoff with jitter, raised to Retry-After).",
    ["dependency"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
FALLBACK_USAGE = Counter(
    "fallback_usage_total",
    "Times a fallback was used, by dependency and fallback: canned_reply (an FAQ answer because "
    "the AI failed), database_store / process_store (a breaker's shared store was unreachable and "
    "it switched to the next one), database_pacing / process_pacing (a paced call got its slot from "
    "a fallback pacing store), process_rate_limit (an incoming request was rate-limited per process "
    "because Redis did not answer).",
    ["dependency", "fallback"],
)
DLQ_ADDED = Counter(
    "dlq_messages_added_total",
    "Dead letters created, by kind and reason category.",
    ["kind", "reason"],
)
RETENTION_PURGED = Counter(
    "hotelbot_retention_purged_rows_total",
    "Rows the retention purge deleted (beat or manage.py purge), by table (app_label.model).",
    ["table"],
)
DLQ_PROCESSING_SECONDS = Histogram(
    "dlq_processing_duration_seconds",
    "Seconds from a dead letter's creation to its leaving pending (resolved or discarded).",
    ["kind"],
    buckets=(60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400),
)
REPLY_LATENCY = Histogram(
    "hotelbot_reply_latency_seconds",
    "Seconds from a guest's message being stored to its reply being accepted by Green API "
    "(the guest-facing SLO: 99% within 60 s).",
    buckets=(1, 2.5, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600),
)
BEAT_LAST_RUN = Gauge(
    "hotelbot_beat_last_run_timestamp_seconds",
    "Unix time the reply sweeper (a Celery beat task) last ran: stale means beat or the workers stopped.",
    multiprocess_mode="max",
)
# --- Redis / broker down (issue 9) ---
BROKER_UP = Gauge(
    "hotelbot_broker_up",
    "1 when this process last reached the Celery broker, 0 while it is marked down (replies are "
    "then taken straight from the database by the workers' fallback pollers).",
    multiprocess_mode="livemin",
)
BROKER_FALLBACK_JOBS = Counter(
    "hotelbot_broker_fallback_jobs_total",
    "Reply jobs a worker took straight from the database while the broker was down, by result.",
    ["result"],
)
BROKER_FALLBACK_RUNS = Counter(
    "hotelbot_broker_fallback_periodic_runs_total",
    "Beat-schedule entries a worker ran itself while the broker was down (beat cannot publish).",
    ["entry"],
)
# --- Handoff to staff (issue 19) ---
HANDOFFS = Counter(
    "hotelbot_handoffs_total",
    "Conversations the bot handed to staff (the owner became waiting), by reason (guest_asked, "
    "complaint, emergency, ai_signal, fallback, unreadable_message, dead_reply).",
    ["reason"],
)
FIRST_HUMAN_REPLY = Histogram(
    "hotelbot_first_human_reply_seconds",
    "Seconds from a handoff to the first staff message to that guest (a staff reply or answer by "
    "hand accepted by Green API, or a message from the hotel's phone); wall-clock.",
    buckets=(60, 300, 600, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 12 * 3600, 86400, 3 * 86400),
)
OPT_OUTS = Counter(
    "hotelbot_opt_outs_total",
    "Guests who opted out of the bot's messages (a STOP, unsubscribe... while not opted out), on commit.",
)
DLQ_CACHE_SECONDS = 10.0


class ScrapeTimeCollector:
    """Gauges counted from the database at scrape time (cached ``DLQ_CACHE_SECONDS``) rather than
    kept up to date: the rows are the truth and change in several processes (web, workers, admin,
    a later redrive), where per-process inc/dec gauges drift, vanish with the process and aggregate
    badly under multiprocess mode. A database outage yields no sample (an absent series, which
    alerts can see) rather than a wrong zero. Subclasses read (:meth:`read`) and shape
    (:meth:`families`)."""

    what = "rows"

    def __init__(self) -> None:
        self._cached: Any = None
        self._expires = 0.0

    def describe(self) -> list[Any]:
        return []  # no collect() at registration (that would query the database at import time)

    def read(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def families(self, cached: Any) -> Iterable[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def collect(self) -> Iterable[Any]:
        now = time.monotonic()
        if now >= self._expires:
            try:
                self._cached = self.read()
            except Exception:
                logger.warning("metrics: %s could not be counted", self.what, exc_info=True)
                return
            self._expires = now + DLQ_CACHE_SECONDS
        if self._cached is not None:
            yield from self.families(self._cached)

    def reset(self) -> None:
        self._expires = 0.0


class DeadLetterCollector(ScrapeTimeCollector):
    """``dlq_messages_total{kind,status}``: dead letters by kind and status, counted at scrape time
    (a ``COUNT ... GROUP BY`` on indexed columns)."""

    what = "dead letters"

    def read(self) -> list[tuple[str, str, int]]:
        return _dead_letter_counts()

    def families(self, cached: list[tuple[str, str, int]]) -> Iterable[Any]:
        family = GaugeMetricFamily(
            "dlq_messages_total",
            "Dead letters by kind and status (counted at scrape time).",
            labels=["kind", "status"],
        )
        for kind, status, count in cached:
            family.add_metric([kind, status], count)
        yield family


class SourcedCollector(ScrapeTimeCollector):
    """A scrape-time collector whose numbers the domain provides (:meth:`set_source`, registered in
    its ``ready()``: reliability never imports it); without a source, no sample."""

    def __init__(self) -> None:
        super().__init__()
        self._source: Callable[[], tuple[int, int]] | None = None

    def set_source(self, source: Callable[[], tuple[int, int]]) -> None:
        self._source = source
        self.reset()

    def read(self) -> tuple[int, int] | None:
        return self._source() if self._source is not None else None


class WaitingCollector(SourcedCollector):
    """``hotelbot_conversations_waiting`` and ``..._past_target``: guests waiting for staff now, and
    of them those past their hotel's target (counted while reception is open), at scrape time."""

    what = "conversations waiting"

    def families(self, cached: tuple[int, int]) -> Iterable[Any]:
        waiting, past = cached
        yield GaugeMetricFamily(
            "hotelbot_conversations_waiting",
            "Conversations waiting for staff now (the bot handed them over; counted at scrape time).",
            value=waiting,
        )
        yield GaugeMetricFamily(
            "hotelbot_conversations_waiting_past_target",
            "Conversations waiting for staff longer than their hotel's handoff_target_minutes, counted "
            "while reception is open (the oldest 500 waiting are timed; at scrape time).",
            value=past,
        )


class HandledCollector(SourcedCollector):
    """``hotelbot_conversations_recent{by}``: the conversations with a message in the last 24 h, by
    who handled them: ``bot`` (the bot alone: never handed to staff nor taken by them) or ``staff``;
    the share resolved by the bot is ``bot / (bot + staff)`` (the recording rule
    ``hotelbot:conversations_bot_share:24h``). One aggregate over an index range, at scrape time."""

    what = "conversations handled"

    def families(self, cached: tuple[int, int]) -> Iterable[Any]:
        family = GaugeMetricFamily(
            "hotelbot_conversations_recent",
            "Conversations with a message in the last 24 h, by who handled them: bot (the bot alone, "
            "never handed to staff nor taken by them) or staff (counted at scrape time).",
            labels=["by"],
        )
        for by, count in zip(("bot", "staff"), cached, strict=True):
            family.add_metric([by], count)
        yield family


def _dead_letter_counts() -> list[tuple[str, str, int]]:
    from django.db.models import Count

    from reliability.models import DeadLetter

    found = {
        (row["kind"], row["status"]): row["n"]
        for row in DeadLetter.objects.order_by().values("kind", "status").annotate(n=Count("id"))
    }
    # Every known kind and status appears (0 included), so rate()/increase() see the series start.
    for kind in DeadLetter.Kind.values:
        for status in DeadLetter.Status.values:
            found.setdefault((kind, status), 0)
    return sorted((k, s, n) for (k, s), n in found.items())


DEAD_LETTERS = DeadLetterCollector()
CONVERSATIONS_WAITING = WaitingCollector()
CONVERSATIONS_HANDLED = HandledCollector()
#: The scrape-time collectors, served by the web's /metrics (reliability.apps, observability).
SCRAPE_TIME: tuple[ScrapeTimeCollector, ...] = (DEAD_LETTERS, CONVERSATIONS_WAITING, CONVERSATIONS_HANDLED)
