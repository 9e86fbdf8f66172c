"""manage.py dlq_retry: filters, dry runs that change nothing, counts, exit codes."""

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

from reliability import dead_letters
from reliability.dead_letters import RedriveResult
from reliability.models import AuditEntry, DeadLetter
from tests.factories import HotelFactory

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
        [*manage, "dlq_retry", "--older-than", "banana", "--skip-checks"],
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
