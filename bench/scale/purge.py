"""The retention purge on the large database (``make bench-scale``'s purge phase, in a child process).

Runs what the daily beat task ``purge_old_records`` runs (``reliability.retention.purge``: every
registered table, in order, with the default retention settings and the hotels' own settings as
filled), table by table with one ``now`` (the task's loop, split so each table's wall time shows),
and records every query's duration (``connection.execute_wrapper``, in this process: the round trip
as the worker sees it). Then:

* **nothing still needed went**: counted before and after, independently of the rules' code: open
  dead letters, the reply jobs they are about and those jobs' messages; unfinished reply jobs
  (among them old ones planted here: jobs a long outage left parked), their messages and attempts;
  every row younger than its table's retention (messages and conversations by their hotel's);
* **nothing past retention was left**: old messages that no open letter or unfinished job guards;
* **a second run deletes nothing** (same ``now``), and its queries are timed too (the steady state:
  the next day's run has one day of rows to go).

The three slowest statements are EXPLAINed (ANALYZE, BUFFERS) after the purge, a DELETE inside a
transaction rolled back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

#: A query over this many milliseconds misses the target (issue 18: "without a query over 1 s").
TARGET_QUERY_MS = 1000.0
#: Old reply jobs made unfinished before the purge (every this-many-th job older than 200 days).
PLANT_EVERY = 5000
EXPLAINED = 3


class Timer:
    """Every query's duration and SQL, by the table being purged."""

    def __init__(self) -> None:
        self.table = ""
        self.queries: list[tuple[str, str, Any, float]] = []  # table, sql, params, seconds

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries.append((self.table, sql, params, time.perf_counter() - started))


def _plant_unfinished(log: Callable[[str], None]) -> int:
    """Old finished jobs made unfinished (parked or pending, as after a long provider outage): the
    fill has unfinished jobs only among the newest, so the rule that keeps them is tested at scale."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE messaging_replyjob SET status = CASE WHEN id %% 2 = 0 THEN 'pending_provider_recovery'
                   ELSE 'pending' END, completed_at = NULL
               WHERE id %% %s = 1 AND created_at < now() - interval '200 days'""",
            [PLANT_EVERY],
        )
        planted = cursor.rowcount
    log(f"  planted {planted} old unfinished reply jobs")
    return int(planted)


def _hotels_by_days() -> dict[int, list[int]]:
    """The hotels by how many days their guests' data is kept (their own setting or the default)."""
    from django.conf import settings

    from messaging.models import Hotel

    by_days: dict[int, list[int]] = {}
    for pk, days in Hotel.objects.values_list("pk", "guest_data_retention_days"):
        by_days.setdefault(days or settings.RETENTION_MESSAGES_DAYS, []).append(pk)
    return by_days


def needed_counts(now: datetime) -> dict[str, int]:
    """Rows the purge must never delete, counted without the rules' code."""
    from django.conf import settings
    from django.db.models import Q

    from messaging.models import Conversation, DeliveryAttempt, Guest, Message, ReplyJob
    from reliability.models import AuditEntry, BreakerEvent, DeadLetter, ReliabilityReport

    unfinished = ("pending", "in_progress", "pending_provider_recovery")
    letters = DeadLetter.objects.filter(status__in=DeadLetter.OPEN_STATUSES)
    letter_jobs = ReplyJob.objects.filter(
        pk__in=letters.filter(subject_type="messaging.replyjob").values("subject_id")
    )
    open_jobs = ReplyJob.objects.filter(status__in=unfinished)

    def messages_of(jobs: Any) -> Any:
        return Message.objects.filter(
            Q(pk__in=jobs.values("inbound_id")) | Q(pk__in=jobs.values("outbound_id"))
        )

    def days_ago(days: int) -> datetime:
        return now - timedelta(days=days)

    def recent(field: str) -> Q:
        condition = Q(pk__in=[])
        for days, hotels in _hotels_by_days().items():
            condition |= Q(hotel_id__in=hotels, **{f"{field}__gte": days_ago(days)})
        return condition

    within_retention = [
        ("attempts", DeliveryAttempt, "started_at", settings.RETENTION_DELIVERY_ATTEMPTS_DAYS),
        ("dead letters created", DeadLetter, "created_at", settings.RETENTION_DEAD_LETTERS_DAYS),
        ("audit entries", AuditEntry, "created_at", settings.RETENTION_AUDIT_DAYS),
        ("breaker events", BreakerEvent, "at", settings.RETENTION_BREAKER_EVENTS_DAYS),
        ("reports", ReliabilityReport, "created_at", settings.RETENTION_REPORTS_DAYS),
    ]
    return {
        "open dead letters": letters.count(),
        "reply jobs of open dead letters": letter_jobs.count(),
        "messages of those jobs": messages_of(letter_jobs).count(),
        "unfinished reply jobs": open_jobs.count(),
        "messages of unfinished jobs": messages_of(open_jobs).count(),
        "attempts of unfinished jobs": DeliveryAttempt.objects.filter(job__in=open_jobs).count(),
        "messages within their hotel's retention": Message.objects.filter(recent("created_at")).count(),
        "conversations within their hotel's retention": Conversation.objects.filter(
            recent("last_message_at")
        ).count(),
        "guests seen within their hotel's retention": Guest.objects.filter(recent("last_seen_at")).count(),
        **{
            f"{label} within retention": model._default_manager.filter(
                **{f"{field}__gte": days_ago(days)}
            ).count()
            for label, model, field, days in within_retention
        },
    }


def left_over(now: datetime) -> dict[str, int]:
    """Rows past retention that nothing guards (0 after a complete purge)."""
    from django.conf import settings
    from django.db.models import Q

    from messaging.models import DeliveryAttempt, Message, ReplyJob

    guarded = ReplyJob.objects.filter(
        Q(status__in=("pending", "in_progress", "pending_provider_recovery")) | Q(pk__in=_open_letter_jobs())
    )
    old = Q(pk__in=[])
    for days, hotels in _hotels_by_days().items():
        old |= Q(hotel_id__in=hotels, created_at__lt=now - timedelta(days=days))
    messages = (
        Message.objects.filter(old)
        .exclude(pk__in=guarded.values("inbound_id"))
        .exclude(pk__in=guarded.filter(outbound__isnull=False).values("outbound_id"))
    )
    attempts = DeliveryAttempt.objects.filter(
        started_at__lt=now - timedelta(days=settings.RETENTION_DELIVERY_ATTEMPTS_DAYS),
        job__status__in=("done", "dead", "superseded"),
    )
    return {"unguarded old messages": messages.count(), "old attempts of finished jobs": attempts.count()}


def _open_letter_jobs() -> Any:
    from reliability.models import DeadLetter

    letters = DeadLetter.objects.filter(
        status__in=DeadLetter.OPEN_STATUSES, subject_type="messaging.replyjob"
    )
    return letters.values("subject_id")


def _run(now: datetime, timer: Timer, log: Callable[[str], None]) -> dict[str, Any]:
    """One purge as beat runs it (every rule, in order, one ``now``), timed table by table."""
    from django.db import connection

    from reliability import retention

    first = len(timer.queries)
    tables = []
    started = time.perf_counter()
    with connection.execute_wrapper(timer):
        for rule in retention.rules():
            timer.table = rule.table
            table_started = time.perf_counter()
            outcome = retention.purge(tables=[rule.table], now=now)
            queries = [q for q in timer.queries[first:] if q[0] == rule.table]
            row = outcome.tables[0]
            tables.append(
                {
                    "table": rule.table,
                    "kept": row.kept,
                    "rows": row.rows,
                    "batches": row.batches,
                    "wall_s": round(time.perf_counter() - table_started, 2),
                    "queries": len(queries),
                    "slowest_query_ms": round(max((q[3] for q in queries), default=0.0) * 1000, 1),
                }
            )
            log(
                f"  {rule.table}: {row.rows:,} rows in {tables[-1]['wall_s']} s, {len(queries)} queries,"
                f" slowest {tables[-1]['slowest_query_ms']} ms"
            )
    wall = time.perf_counter() - started
    queries = timer.queries[first:]
    by_sql: dict[str, dict[str, Any]] = {}
    for table, sql, _params, seconds in queries:
        entry = by_sql.setdefault(
            sql, {"table": table, "sql": sql, "count": 0, "total_ms": 0.0, "max_ms": 0.0}
        )
        entry["count"] += 1
        entry["total_ms"] += seconds * 1000
        entry["max_ms"] = max(entry["max_ms"], seconds * 1000)
    statements = sorted(by_sql.values(), key=lambda e: -e["max_ms"])
    for entry in statements:
        entry["total_ms"], entry["max_ms"] = round(entry["total_ms"], 1), round(entry["max_ms"], 1)
    slowest = max(queries, key=lambda q: q[3], default=None)
    return {
        "wall_s": round(wall, 1),
        "rows": sum(t["rows"] for t in tables),
        "queries": len(queries),
        "slowest_query_ms": round(slowest[3] * 1000, 1) if slowest else 0.0,
        "queries_over_target": sum(1 for q in queries if q[3] * 1000 > TARGET_QUERY_MS),
        "tables": tables,
        "statements_by_slowest": statements[:15],
    }


def _explain(sql: str, params: Any) -> str:
    from django.db import connection, transaction

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        transaction.set_rollback(True)
    return plan


def measure(log: Callable[[str], None] = print) -> dict[str, Any]:
    from django.conf import settings
    from django.utils import timezone

    planted = _plant_unfinished(log)
    now = timezone.now()
    log("  counting the rows that must stay ...")
    before = needed_counts(now)
    timer = Timer()
    log("  purging (first run) ...")
    first = _run(now, timer, log)
    after = needed_counts(now)
    rest = left_over(now)
    log("  purging again (same now) ...")
    second = _run(now, timer, log)
    slowest = sorted(timer.queries, key=lambda q: -q[3])[:EXPLAINED]
    explained = [
        {"table": t, "ms": round(s * 1000, 1), "sql": sql, "plan": _explain(sql, params)}
        for t, sql, params, s in slowest
    ]
    lost = {name: before[name] - after[name] for name in before if before[name] != after[name]}
    passed = (
        first["slowest_query_ms"] <= TARGET_QUERY_MS
        and second["slowest_query_ms"] <= TARGET_QUERY_MS
        and not lost
        and second["rows"] == 0
        and not any(rest.values())
    )
    return {
        "now": now.isoformat(),
        "retention_days": {
            name: getattr(settings, name) for name in dir(settings) if name.startswith("RETENTION_")
        },
        "planted_unfinished_jobs": planted,
        "target_query_ms": TARGET_QUERY_MS,
        "first": first,
        "second": second,
        "must_stay": {"before": before, "after": after, "lost": lost},
        "left_past_retention": rest,
        "slowest_explained": explained,
        "passed": passed,
    }
