"""manage.py dlq_retry and dlq_purge: filters, dry runs that change nothing, counts, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone

from messaging.models import DeliveryAttempt, ReplyJob
from reliability import dead_letters, tasks
from reliability.dead_letters import RedriveResult
from reliability.models import AuditEntry, BreakerEvent, DeadLetter, ReliabilityReport
from tests.factories import HotelFactory, ReplyJobFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[4]
SEND = DeadLetter.Kind.REPLY_SEND
GEN = DeadLetter.Kind.REPLY_GENERATION
QUARANTINE = DeadLetter.Kind.WEBHOOK_QUARANTINE


class _Handler:
    def __init__(self) -> None:
        self.redriven: list[int] = []

    def redrive(self, letter: DeadLetter, *, actor: Any = None) -> RedriveResult:
        self.redriven.append(letter.pk)
        if letter.reason_code == "already_delivered":
            return RedriveResult(resolved=True, detail="delivered meanwhile")
        return RedriveResult(handed_back=True, detail="requeued")

    def alert(self, letter: DeadLetter) -> None:
        pass


@pytest.fixture
def reply_handlers_only() -> Iterator[_Handler]:
    """One fake handler for both reply kinds; no handler for quarantined notifications (refused)."""
    saved = dict(dead_letters._handlers)
    h = _Handler()
    dead_letters._handlers.clear()
    dead_letters.register_handler(SEND, h)
    dead_letters.register_handler(GEN, h)
    yield h
    dead_letters._handlers.clear()
    dead_letters._handlers.update(saved)


def letter(
    *,
    kind: str = SEND,
    category: str = DeadLetter.Category.PROVIDER_5XX,
    dependency: str = "green_api",
    status: str = DeadLetter.Status.PENDING,
    tenant: str = "1",
    age: timedelta = timedelta(hours=2),
    reason_code: str = "attempts_exhausted",
    **extra: Any,
) -> DeadLetter:
    row = DeadLetter.objects.create(
        kind=kind,
        category=category,
        dependency=dependency,
        status=status,
        tenant=tenant,
        reason_code=reason_code,
        reason="gave up",
        subject=f"{kind} {tenant}",
        **extra,
    )
    then = timezone.now() - age
    DeadLetter.objects.filter(pk=row.pk).update(created_at=then, updated_at=then)
    row.refresh_from_db()
    return row


def run(name: str, *args: str) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out, stderr=out)
    return out.getvalue()


def statuses() -> dict[int, str]:
    return dict(DeadLetter.objects.values_list("pk", "status"))


# --- dlq_retry ----------------------------------------------------------------------------------------
def test_retry_dry_run_lists_the_filtered_letters_and_changes_nothing(reply_handlers_only):
    # given letters that differ in one filtered field each
    match = letter()
    other_kind = letter(kind=GEN)
    other_category = letter(category=DeadLetter.Category.TIMEOUT)
    other_dependency = letter(dependency="deepseek")
    other_hotel = letter(tenant="2")
    manual = letter(status=DeadLetter.Status.MANUAL)
    too_young = letter(age=timedelta(minutes=5))
    before = statuses()
    # when
    out = run(
        "dlq_retry", "--kind", SEND, "--category", "provider_5xx", "--dependency", "green_api",
        "--hotel", "1", "--older-than", "1h", "--dry-run",
    )  # fmt: skip
    # then only the one match is listed, and nothing changed
    assert "1 dead letter(s) would be retried" in out
    assert str(match.pk) in out
    for pk in (
        other_kind.pk,
        other_category.pk,
        other_dependency.pk,
        other_hotel.pk,
        manual.pk,
        too_young.pk,
    ):
        assert f"\n{pk:>8} " not in f"\n{out}"
    assert statuses() == before
    assert reply_handlers_only.redriven == []
    assert not AuditEntry.objects.exists()


def test_retry_redrives_the_matches_and_audits_the_batch_as_the_system(reply_handlers_only):
    a, b = letter(), letter(reason_code="already_delivered")
    manual = letter(status=DeadLetter.Status.MANUAL)
    out = run("dlq_retry", "--reason", "provider back")
    assert "matched 2: retried 1, resolved 1, refused 0" in out
    assert sorted(reply_handlers_only.redriven) == sorted([a.pk, b.pk])
    assert statuses()[a.pk] == DeadLetter.Status.RETRYING
    assert statuses()[b.pk] == DeadLetter.Status.RESOLVED
    assert statuses()[manual.pk] == DeadLetter.Status.MANUAL  # default status filter: pending only
    entry = AuditEntry.objects.get(action="dead_letter.retry_bulk")
    assert (entry.via, entry.actor_name, entry.reason) == ("command", "system", "provider back")
    assert entry.details == {"retried": 1, "resolved": 1, "refused": 0}


def test_retry_by_id_status_manual_and_limit(reply_handlers_only):
    first = letter(status=DeadLetter.Status.MANUAL, age=timedelta(hours=3))
    second = letter(status=DeadLetter.Status.MANUAL)
    not_asked = letter(status=DeadLetter.Status.MANUAL)
    out = run(
        "dlq_retry", "--status", "manual", "--id", str(first.pk), "--id", str(second.pk), "--limit", "1"
    )
    assert "matched 1: retried 1" in out
    assert reply_handlers_only.redriven == [first.pk]  # oldest first
    assert statuses()[second.pk] == statuses()[not_asked.pk] == DeadLetter.Status.MANUAL


def test_retry_as_a_staff_user_touches_only_their_hotel_and_is_audited_as_them(reply_handlers_only):
    hotel = HotelFactory.create(green_api_instance_id="1101000077")
    user = User.objects.create_user("reception", is_staff=True)
    hotel.staff.add(user)
    mine, theirs = letter(tenant=str(hotel.pk)), letter(tenant=str(hotel.pk + 1000))
    out = run("dlq_retry", "--as", "reception")
    assert "matched 1: retried 1" in out
    assert reply_handlers_only.redriven == [mine.pk]
    assert statuses()[theirs.pk] == DeadLetter.Status.PENDING
    assert AuditEntry.objects.get(action="dead_letter.retry_bulk").actor == user


def test_refused_letters_make_the_command_fail_with_the_counts_and_first_errors(reply_handlers_only):
    ok = letter()
    refused = letter(kind=QUARANTINE, dependency="")
    err = StringIO()
    with pytest.raises(CommandError, match="retried 1, resolved 0, refused 1"):
        call_command("dlq_retry", stdout=StringIO(), stderr=err)
    assert f"refused {refused.pk}: Nothing can redrive" in err.getvalue()
    assert statuses()[ok.pk] == DeadLetter.Status.RETRYING
    assert statuses()[refused.pk] == DeadLetter.Status.PENDING


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--older-than", "banana"), "not an age"),
        (("--older-than", "7 parsecs"), "not an age"),
        (("--limit", "0"), "at least 1"),
        (("--as", "nobody"), "No active user named 'nobody'"),
        (("--status", "resolved"), "invalid choice"),
        (("--category", "cosmic_rays"), "invalid choice"),
    ],
)
def test_retry_bad_input_is_a_command_error(reply_handlers_only, args, message):
    pending = letter()
    with pytest.raises(CommandError, match=message):
        run("dlq_retry", *args)
    assert statuses()[pending.pk] == DeadLetter.Status.PENDING


@pytest.mark.slow
def test_exit_codes_from_the_command_line(tmp_path):
    """1 = CommandError (bad input), 2 = usage error (argparse); both before any database work."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.setdefault("HOTELBOT_VAR_DIR", str(tmp_path))
    manage = [sys.executable, str(ROOT / "manage.py")]
    bad_age = subprocess.run(
        [*manage, "dlq_purge", "--older-than", "banana", "--skip-checks"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert bad_age.returncode == 1, bad_age.stderr
    assert "not an age" in bad_age.stderr
    bad_usage = subprocess.run(
        [*manage, "dlq_retry", "--status", "resolved", "--skip-checks"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert bad_usage.returncode == 2
    assert "invalid choice" in bad_usage.stderr


# --- dlq_purge -------------------------------------------------------------------------------------
OLD = timedelta(days=10)


def _closed(status: str, age: timedelta) -> DeadLetter:
    row = letter(status=status, age=age)
    DeadLetter.objects.filter(pk=row.pk).update(resolved_at=timezone.now() - age)
    return row


def _event(age: timedelta) -> BreakerEvent:
    return BreakerEvent.objects.create(
        breaker="green_api", from_state="closed", to_state="open", reason="test", failure_rate=100.0,
        slow_call_rate=0.0, source="local", process="test:1", at=timezone.now() - age,
    )  # fmt: skip


def _attempts(job: ReplyJob, n: int, age: timedelta) -> None:
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(
            job=job, attempt=i + 1, step="send", started_at=timezone.now() - age, duration_ms=5,
            outcome="not_sent",
        )
        for i in range(n)
    )  # fmt: skip


@pytest.fixture
def old_and_new() -> dict[str, Any]:
    """Rows on both sides of a 7-day cut-off, open and closed, finished and unfinished."""
    rows: dict[str, Any] = {
        "old_resolved": _closed(DeadLetter.Status.RESOLVED, OLD),
        "old_discarded": _closed(DeadLetter.Status.DISCARDED, OLD),
        "new_resolved": _closed(DeadLetter.Status.RESOLVED, timedelta(days=1)),
        "old_pending": letter(age=OLD),
        "old_manual": letter(status=DeadLetter.Status.MANUAL, age=OLD),
        "old_retrying": letter(status=DeadLetter.Status.RETRYING, age=OLD),
    }
    for _ in range(3):
        _event(OLD)
    _event(timedelta(days=1))
    done = ReplyJobFactory.create(status=ReplyJob.Status.DONE)
    dead = ReplyJobFactory.create(status=ReplyJob.Status.DEAD)
    pending = ReplyJobFactory.create(status=ReplyJob.Status.PENDING)
    _attempts(done, 3, OLD)
    _attempts(dead, 2, OLD)
    _attempts(pending, 4, OLD)  # a job on its way keeps its history
    _attempts(done, 1, timedelta(days=1))
    for _ in range(2):
        AuditEntry.objects.create(actor_name="system", via="system", action="test")
    AuditEntry.objects.update(created_at=timezone.now() - OLD)
    report = ReliabilityReport.objects.create(
        period_start=timezone.now() - OLD, period_end=timezone.now() - OLD + timedelta(hours=1), data={}
    )
    ReliabilityReport.objects.filter(pk=report.pk).update(created_at=timezone.now() - OLD)
    return rows


def _table_counts() -> dict[str, int]:
    return {
        "letters": DeadLetter.objects.count(),
        "events": BreakerEvent.objects.count(),
        "attempts": DeliveryAttempt.objects.count(),
        "audit": AuditEntry.objects.count(),
        "reports": ReliabilityReport.objects.count(),
    }


def test_purge_dry_run_prints_counts_per_table_and_deletes_nothing(old_and_new):
    before = _table_counts()
    out = run("dlq_purge", "--older-than", "7d", "--dry-run", "--include-audit")
    assert _table_counts() == before
    lines = {line.split()[0]: int(line.split()[1]) for line in out.splitlines() if line.startswith("  ")}
    assert lines == {
        "reliability.deadletter": 2,
        "reliability.breakerevent": 3,
        "reliability.reliabilityreport": 1,
        "reliability.auditentry": 2,
        "messaging.deliveryattempt": 5,
    }
    assert "would delete 13 row(s); nothing changed (dry run)" in out


def test_purge_deletes_old_closed_rows_in_batches_never_open_letters_nor_audit(old_and_new):
    out = run("dlq_purge", "--older-than", "7d", "--batch-size", "2")
    assert "deleted 11 row(s)" in out
    # progress after every batch of 2: 3 attempts + 2 attempts → 2, 4, 5
    assert "messaging.deliveryattempt: 2 deleted so far" in out
    assert "messaging.deliveryattempt: 5 deleted so far" in out
    assert "reliability.breakerevent: 3 deleted so far" in out
    remaining = set(DeadLetter.objects.values_list("pk", flat=True))
    kept = {old_and_new[k].pk for k in ("new_resolved", "old_pending", "old_manual", "old_retrying")}
    assert remaining == kept
    assert BreakerEvent.objects.count() == 1
    assert DeliveryAttempt.objects.count() == 5  # 4 of the pending job + 1 recent
    assert AuditEntry.objects.count() == 2  # only with --include-audit
    assert ReliabilityReport.objects.count() == 0
    run("dlq_purge", "--older-than", "7d", "--include-audit")
    assert AuditEntry.objects.count() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--older-than", "banana"), "not an age"),
        (("--older-than", "30m"), "younger than one hour"),
        (("--older-than", "7d", "--batch-size", "0"), "at least 1"),
    ],
)
def test_purge_bad_input_is_a_command_error_and_deletes_nothing(old_and_new, args, message):
    before = _table_counts()
    with pytest.raises(CommandError, match=message):
        run("dlq_purge", *args)
    assert _table_counts() == before


def test_purge_beat_task_keeps_retention_days(settings, old_and_new):
    settings.RETENTION_DAYS = 11  # the 10-day-old rows are inside retention
    assert sum(tasks.purge_old_records().values()) == 0
    settings.RETENTION_DAYS = 9
    counts = tasks.purge_old_records()
    assert counts["reliability.deadletter"] == 2
    assert counts["messaging.deliveryattempt"] == 5
    assert "reliability.auditentry" not in counts
    assert AuditEntry.objects.count() == 2
