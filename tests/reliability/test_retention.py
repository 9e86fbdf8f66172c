"""The retention engine and ``manage.py purge``: per-table retention, keyset batches (every DELETE
bounded by ``id >``, no OFFSET, no restart), dry runs, bad input, the beat task, and a year of data
purged on PostgreSQL without a query over 1 s."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from messaging.models import DeliveryAttempt, Message, ReplyJob
from reliability import retention, tasks
from reliability.metrics import RETENTION_PURGED
from reliability.models import AuditEntry, BreakerEvent, DeadLetter, ReliabilityReport
from tests.factories import ReplyJobFactory

pytestmark = pytest.mark.django_db

OLD = timedelta(days=10)
DAYS = (
    "RETENTION_DEAD_LETTERS_DAYS",
    "RETENTION_BREAKER_EVENTS_DAYS",
    "RETENTION_REPORTS_DAYS",
    "RETENTION_AUDIT_DAYS",
    "RETENTION_DELIVERY_ATTEMPTS_DAYS",
)


@pytest.fixture
def seven_days(settings) -> None:
    for name in DAYS:
        setattr(settings, name, 7)


def _letter(status: str, age: timedelta) -> DeadLetter:
    row = DeadLetter.objects.create(
        kind=DeadLetter.Kind.REPLY_SEND, status=status, reason_code="x", reason="x"
    )
    then = timezone.now() - age
    closed = then if status not in DeadLetter.OPEN_STATUSES else None
    DeadLetter.objects.filter(pk=row.pk).update(created_at=then, updated_at=then, resolved_at=closed)
    return row


def _event(age: timedelta) -> None:
    BreakerEvent.objects.create(
        breaker="green_api", from_state="closed", to_state="open", reason="test", failure_rate=100.0,
        slow_call_rate=0.0, source="local", process="test:1", at=timezone.now() - age,
    )  # fmt: skip


def _attempts(job: ReplyJob, n: int, age: timedelta) -> None:
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(
            job=job,
            attempt=i + 1,
            step="send",
            started_at=timezone.now() - age,
            duration_ms=5,
            outcome="not_sent",
        )
        for i in range(n)
    )


@pytest.fixture
def old_and_new(seven_days) -> dict[str, Any]:
    """Rows on both sides of a 7-day retention, open and closed, finished and unfinished."""
    rows = {
        "old_resolved": _letter(DeadLetter.Status.RESOLVED, OLD),
        "old_discarded": _letter(DeadLetter.Status.DISCARDED, OLD),
        "new_resolved": _letter(DeadLetter.Status.RESOLVED, timedelta(days=1)),
        **{f"old_{s}": _letter(s, OLD) for s in DeadLetter.OPEN_STATUSES},
    }
    for _ in range(3):
        _event(OLD)
    _event(timedelta(days=1))
    _attempts(ReplyJobFactory.create(status=ReplyJob.Status.DONE), 3, OLD)
    _attempts(ReplyJobFactory.create(status=ReplyJob.Status.DEAD), 2, OLD)
    _attempts(ReplyJobFactory.create(status=ReplyJob.Status.PENDING), 4, OLD)  # a job on its way keeps them
    for _ in range(2):
        AuditEntry.objects.create(actor_name="system", via="system", action="test")
    AuditEntry.objects.update(created_at=timezone.now() - OLD)
    report = ReliabilityReport.objects.create(
        period_start=timezone.now() - OLD, period_end=timezone.now() - OLD + timedelta(hours=1), data={}
    )
    ReliabilityReport.objects.filter(pk=report.pk).update(created_at=timezone.now() - OLD)
    return rows


def _counts() -> dict[str, int]:
    return {
        "letters": DeadLetter.objects.count(),
        "events": BreakerEvent.objects.count(),
        "attempts": DeliveryAttempt.objects.count(),
        "audit": AuditEntry.objects.count(),
        "reports": ReliabilityReport.objects.count(),
        "messages": Message.objects.count(),
    }


def run(*args: str) -> str:
    out = StringIO()
    call_command("purge", *args, stdout=out, stderr=out)
    return out.getvalue()


def _table_lines(out: str) -> dict[str, int]:
    return {
        line.split()[0]: int(line.split()[1])
        for line in out.splitlines()
        if re.match(r"^  [a-z_.]+ +\d+ ", line)
    }


def test_dry_run_prints_what_would_go_per_table_and_deletes_nothing(old_and_new):
    before = _counts()
    out = run("--dry-run")
    assert _counts() == before
    lines = _table_lines(out)
    assert {k: v for k, v in lines.items() if v} == {
        "reliability.deadletter": 2,
        "reliability.breakerevent": 3,
        "reliability.reliabilityreport": 1,
        "reliability.auditentry": 2,
        "messaging.deliveryattempt": 5,
    }
    assert set(lines) == {rule.table for rule in retention.rules()}
    assert "would delete 13 row(s); nothing changed (dry run)" in out


def test_purge_deletes_in_batches_with_progress_never_open_letters(old_and_new):
    metric = RETENTION_PURGED.labels(table="reliability.breakerevent")
    before = metric._value.get()
    out = run("--batch-size", "2")
    assert "deleted 13 row(s)" in out
    assert "messaging.deliveryattempt: 2 deleted so far" in out
    assert "messaging.deliveryattempt: 5 deleted so far" in out
    assert "reliability.breakerevent: 3 deleted so far" in out
    assert metric._value.get() - before == 3
    kept = {old_and_new[k].pk for k in ("new_resolved", *(f"old_{s}" for s in DeadLetter.OPEN_STATUSES))}
    assert set(DeadLetter.objects.values_list("pk", flat=True)) == kept
    assert BreakerEvent.objects.count() == 1
    assert DeliveryAttempt.objects.count() == 4  # the pending job's
    assert AuditEntry.objects.count() == 0
    assert ReliabilityReport.objects.count() == 0


def test_table_narrows_the_purge(old_and_new):
    out = run("--table", "reliability.breakerevent", "--table", "reliability.auditentry")
    assert _table_lines(out) == {"reliability.breakerevent": 3, "reliability.auditentry": 2}
    assert DeadLetter.objects.count() == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--batch-size", "0"), "between 1 and"),
        (("--batch-size", "1000000"), "between 1 and"),
        (("--table", "messaging.nope"), "Unknown table messaging.nope; choose from"),
    ],
)
def test_bad_input_is_a_command_error_and_deletes_nothing(old_and_new, args, message):
    before = _counts()
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert _counts() == before


def test_beat_task_follows_each_tables_setting(settings, old_and_new):
    for name in DAYS:
        setattr(settings, name, 11)  # the 10-day-old rows are inside retention
    assert sum(tasks.purge_old_records().values()) == 0
    settings.RETENTION_BREAKER_EVENTS_DAYS = 9
    counts = tasks.purge_old_records()
    assert counts["reliability.breakerevent"] == 3
    assert sum(counts.values()) == 3


# --- a year of data, on PostgreSQL: keyset-bounded and fast -------------------------------------------
def _year_of_messages(n: int) -> None:
    """``n`` guest messages over the last year (one hotel, 50 guests), half with a finished reply
    job and an attempt, plus a few needed rows among the old ones; set-based SQL."""
    job = ReplyJobFactory.create(status=ReplyJob.Status.DONE)
    hotel_id, conversation_id = job.inbound.hotel_id, job.inbound.conversation_id
    with connection.cursor() as cur:
        cur.execute(
            """INSERT INTO messaging_message (conversation_id, hotel_id, direction, text, message_type,
                   provider_message_id, status, status_detail, created_at)
               SELECT %s, %s, 'in', 'question ' || g, 'textMessage', 'Y' || g, 'received', '',
                      now() - make_interval(secs => (365.0 * 86400 * (%s - g)) / %s)
               FROM generate_series(1, %s) AS g""",
            [conversation_id, hotel_id, n, n, n],
        )
        cur.execute(
            """INSERT INTO messaging_replyjob (inbound_id, status, attempts, next_attempt_at, lease_token,
                   reply_text, degraded, degraded_reason, last_error, published_task_id, republish_count,
                   manual_text, created_at, updated_at)
               SELECT id, CASE WHEN id % 1000 = 0 THEN 'pending' ELSE 'done' END, 1, now(), '', 'answer',
                      false, '', '', '', 0, '', created_at, created_at
               FROM messaging_message WHERE provider_message_id LIKE 'Y%%' AND id % 2 = 0"""
        )
        cur.execute(
            """INSERT INTO messaging_deliveryattempt
                   (job_id, attempt, step, started_at, duration_ms, outcome, error)
               SELECT id, 1, 'send', created_at, 5, 'ok', '' FROM messaging_replyjob"""
        )
        cur.execute(
            "ANALYZE messaging_message; ANALYZE messaging_replyjob; ANALYZE messaging_deliveryattempt"
        )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL figure")
def test_a_year_of_messages_is_purged_in_keyset_batches_without_a_slow_query(settings):
    settings.RETENTION_MESSAGES_DAYS = 180
    settings.RETENTION_DELIVERY_ATTEMPTS_DAYS = 30
    n = 50_000
    _year_of_messages(n)
    needed = set(ReplyJob.objects.filter(status=ReplyJob.Status.PENDING).values_list("inbound_id", flat=True))
    old_needed = {
        pk for pk in needed if Message.objects.get(pk=pk).created_at < timezone.now() - timedelta(days=180)
    }
    assert len(old_needed) > 10
    # A window's rows are checked against the needed jobs by index: no statement reads the reply-job
    # table whole (an OR of the needed sets did, twice per statement: 1 s each at a million jobs).
    rule = next(r for r in retention.rules() if r.table == "messaging.message")
    first = Message.objects.order_by("pk").values_list("pk", flat=True)[0]
    window = rule.scope(timezone.now()).rows.filter(pk__gt=first - 1, pk__lte=first + 500).values("pk")
    sql, params = window.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Seq Scan on messaging_replyjob" not in plan, plan
    statements: list[tuple[str, float]] = []

    def timed(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            statements.append((sql, time.perf_counter() - started))

    started = time.perf_counter()
    with connection.execute_wrapper(timed):
        outcome = retention.purge(tables=["messaging.deliveryattempt", "messaging.message"], batch_size=500)
    elapsed = time.perf_counter() - started
    deleted = outcome.counts["messaging.message"]
    assert 0.49 * n < deleted < 0.52 * n  # ~185 of 365 days went
    assert set(Message.objects.filter(pk__in=old_needed).values_list("pk", flat=True)) == old_needed
    assert (
        not Message.objects.filter(created_at__lt=timezone.now() - timedelta(days=181))
        .exclude(pk__in=old_needed)
        .exists()
    )
    deletes = [sql for sql, _ in statements if sql.lstrip().upper().startswith("DELETE")]
    assert len(deletes) > 3 * (deleted // 500)  # attempts, jobs, messages per batch
    for sql in deletes:
        assert re.search(r'"id" > \d+|"id" > %s', sql) or '"id" >' in sql, sql
        assert "OFFSET" not in sql.upper()
    assert not [sql for sql, _ in statements if "OFFSET" in sql.upper()]
    slowest = max(seconds for _, seconds in statements)
    assert slowest < 1.0, max(statements, key=lambda s: s[1])
    print(
        f"\n{n} messages: {deleted} deleted in {elapsed:.1f} s, {len(statements)} queries, "
        f"slowest {slowest:.3f} s"
    )
