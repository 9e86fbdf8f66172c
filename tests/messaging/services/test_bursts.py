"""One answer for a burst (issue 19 item 7, messaging/services/bursts.py): a guest's messages
written within the quiet window are answered by one reply, on both intake paths and databases.

Time passing is a job made due (``next_attempt_at`` moved to now), as in the other pipeline tests:
the window's arithmetic is asserted on the rows, never slept through.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone
from prometheus_client import REGISTRY

from messaging.models import Conversation, Hotel, Message, ReplyJob
from messaging.notifications import RawBody, parse_webhook_body
from messaging.selectors import reply_latency, reply_stats
from messaging.services import alerts, inbound_sql, intake, replies
from tests.factories import HotelFactory
from tests.messaging import payloads
from tests.messaging.services import guest_races

pytestmark = pytest.mark.django_db(transaction=True)
POSTGRES = connection.vendor == "postgresql"
MERGED_METRIC = "hotelbot_reply_bursts_merged_total"


@pytest.fixture(params=["statement", "orm"])
def intake_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, settings: Any) -> str:
    """Each intake path: PostgreSQL's one statement, and the ORM path (SQLite's; forced on PostgreSQL).
    The product's window: 3 s quiet, 15 s cap."""
    if request.param == "statement" and not POSTGRES:
        pytest.skip("the one-statement path is PostgreSQL's")
    if request.param == "orm":
        monkeypatch.setattr(inbound_sql, "available", lambda: False)
    settings.REPLY_BURST_QUIET_SECONDS = 3.0
    settings.REPLY_BURST_MAX_SECONDS = 15.0
    HotelFactory.create()
    return str(request.param)


def _write(text: str, n: int) -> ReplyJob:
    """The guest (payloads.CHAT) writes ``text``: stored through the path under test; its job."""
    body = payloads.incoming_text(id_message=f"BURST-{n}", text=text)
    result = intake.notification_ingest(
        notification=parse_webhook_body(RawBody(json.dumps(body).encode(), 0))
    )
    assert result.action == "stored"
    return ReplyJob.objects.get(inbound_id=result.message_id)


def _burst_written(*texts: str) -> ReplyJob:
    """The guest writes ``texts`` within the window, then the window passes: the answering job."""
    jobs = [_write(text, n) for n, text in enumerate(texts, 1)]
    guest_races.due(jobs[-1].pk)
    return jobs[-1]


def _start(job: ReplyJob) -> datetime:
    assert job.burst_started_at is not None
    return job.burst_started_at


def _merged() -> float:
    return REGISTRY.get_sample_value(MERGED_METRIC) or 0.0


def _jobs() -> list[tuple[str, int | None]]:
    return list(ReplyJob.objects.order_by("pk").values_list("status", "merged_into_id"))


def test_messages_within_the_quiet_window_are_answered_by_one_job(intake_path: str) -> None:
    before = _merged()
    first = _write("hi", 1)
    assert first.status == "pending"
    assert first.burst_started_at is not None
    # Not claimable before the window has passed: a task arriving now finds nothing to do.
    assert timezone.now() < first.next_attempt_at <= first.burst_started_at + timedelta(seconds=3)
    assert replies.reply_job_process(job_id=first.pk).result == "skipped"

    second = _write("do you have parking", 2)
    third = _write("and breakfast?", 3)
    assert _jobs() == [("merged", third.pk), ("merged", third.pk), ("pending", None)]
    assert third.burst_started_at == first.burst_started_at  # the burst's first message
    assert third.next_attempt_at > second.next_attempt_at  # each message restarts the wait
    assert third.next_attempt_at <= timezone.now() + timedelta(seconds=3)
    assert _merged() - before == 2
    merged = ReplyJob.objects.filter(status="merged")
    assert all(job.completed_at is not None and not job.reply_text for job in merged)


def test_the_cap_ends_a_burst_however_the_guest_goes_on_writing(intake_path: str) -> None:
    first = _write("hi", 1)
    # The guest has been writing for 14 s, every message inside the quiet window.
    started = timezone.now() - timedelta(seconds=14)
    ReplyJob.objects.filter(pk=first.pk).update(burst_started_at=started)
    second = _write("one more thing", 2)
    assert _jobs() == [("merged", second.pk), ("pending", None)]
    # Due at the cap (the burst's start + 15 s), not a full quiet window from now.
    assert second.next_attempt_at == started + timedelta(seconds=15)

    # Past the cap, the next message starts a burst of its own.
    ReplyJob.objects.filter(pk=second.pk).update(burst_started_at=timezone.now() - timedelta(seconds=16))
    writing = timezone.now()
    third = _write("and another", 3)
    assert _jobs() == [("merged", second.pk), ("pending", None), ("pending", None)]
    assert _start(third) >= writing


def test_a_job_already_generating_is_never_merged_into(intake_path: str) -> None:
    first = _write("hi", 1)
    guest_races.due(first.pk)
    claimed = replies._claim(first.pk, timezone.now())  # a worker took it: generating now
    assert claimed is not None
    second = _write("do you have parking", 2)
    assert _jobs() == [("in_progress", None), ("pending", None)]
    assert _start(second) > _start(first)  # a new burst

    # A job whose window passed but no worker took yet is not merged either: the guest was quiet.
    guest_races.due(second.pk)
    third = _write("and breakfast?", 3)
    assert [s for s, _ in _jobs()] == ["in_progress", "pending", "pending"]
    assert _start(third) > _start(second)


@pytest.mark.skipif(
    not POSTGRES, reason="a claim holding the row while the intake runs needs two connections"
)
def test_a_claim_in_flight_wins_over_the_merge(intake_path: str) -> None:
    """A real race: a worker's claim holds the earlier job's row (``FOR UPDATE``, not committed) when
    the guest's next message is stored. The intake's merge waits for it, re-reads the row, finds it
    claimed and leaves it: the new message starts its own burst (its due time and start are its own,
    not the claimed burst's)."""
    first = _write("hi", 1)  # waiting out its window: the intake below reads it as mergeable
    holding, release, failed = threading.Event(), threading.Event(), []

    def claim() -> None:
        try:
            with transaction.atomic():
                ReplyJob.objects.select_for_update().filter(pk=first.pk).update(status="in_progress")
                holding.set()
                release.wait(5)
        except Exception as e:  # pragma: no cover - reported below
            failed.append(e)
        finally:
            connection.close()

    worker = threading.Thread(target=claim)
    worker.start()
    assert holding.wait(5)
    timer = threading.Timer(0.5, release.set)  # commit while the intake waits on the row
    timer.start()
    second = _write("do you have parking", 2)
    worker.join(5)
    assert failed == []
    assert _jobs() == [("in_progress", None), ("pending", None)]
    assert _start(second) > _start(first)


def test_bursts_off_every_message_is_answered_at_once(intake_path: str, settings: Any) -> None:
    settings.REPLY_BURST_QUIET_SECONDS = 0
    first = _write("hi", 1)
    second = _write("do you have parking", 2)
    assert _jobs() == [("pending", None), ("pending", None)]
    assert first.next_attempt_at <= timezone.now()
    assert second.next_attempt_at <= timezone.now()


def test_the_burst_is_answered_by_one_ai_call_and_one_send_counted_once(
    intake_path: str, fake_green: Any, fake_deepseek: Any
) -> None:
    last = _burst_written("hi", "do you have parking", "and breakfast?")
    for job in ReplyJob.objects.order_by("pk"):  # the merged jobs' own tasks find nothing to do
        expected = "done" if job.pk == last.pk else "skipped"
        assert replies.reply_job_process(job_id=job.pk).result == expected

    [call] = fake_deepseek.journal(path_regex="chat/completions")
    prompt = call["body"]["messages"]
    assert prompt[-1] == {"role": "user", "content": "hi\ndo you have parking\nand breakfast?"}
    assert [m["role"] for m in prompt] == ["system", "user"]  # the burst is no history of itself
    [sent] = fake_green.sent_messages()
    assert sent["textMessage"].startswith("Hello and welcome to")
    assert "Parking at" in sent["textMessage"]
    assert "Breakfast at" in sent["textMessage"]

    now = timezone.now()
    stats = reply_stats(since=now - timedelta(hours=1), until=now + timedelta(seconds=1), tenants=None)
    assert stats.by_result["done"] == 1
    assert "merged" not in stats.by_result
    assert sum(stats.by_result.values()) == 1
    # The latency is the guest's wait from the burst's first message, not from its last.
    latency = reply_latency(since=now - timedelta(hours=1), until=now + timedelta(seconds=1))
    last.refresh_from_db()
    assert last.outbound is not None
    assert last.outbound.accepted_at is not None
    from_first = (last.outbound.accepted_at - _start(last)).total_seconds()
    assert latency.count == 1
    assert latency.p50 == pytest.approx(from_first, abs=0.002)
    assert from_first > (last.outbound.accepted_at - last.inbound.created_at).total_seconds()


def test_a_handoff_keyword_in_any_message_of_the_burst_hands_over_once(
    intake_path: str, fake_green: Any, fake_deepseek: Any
) -> None:
    last = _burst_written("I want to talk to a person", "is there parking?", "thanks")
    assert replies.reply_job_process(job_id=last.pk).result == "done"
    assert fake_deepseek.journal(path_regex="chat/completions") == []  # the guest's own words: no AI
    [notice] = fake_green.sent_messages()
    assert "staff" in notice["textMessage"]
    conversation = Conversation.objects.get()
    assert (conversation.owner, conversation.owner_reason) == ("waiting", "guest_asked")
    assert list(ReplyJob.objects.order_by("pk").values_list("kind", "status")) == [
        ("answer", "merged"),
        ("answer", "merged"),
        ("handoff", "done"),
    ]


def test_the_handoff_mail_quotes_every_message_of_the_burst(
    intake_path: str, fake_green: Any, fake_deepseek: Any, settings: Any
) -> None:
    Hotel.objects.update(staff_email="desk@example.com")
    last = _burst_written("I want to talk to a person", "is there parking?", "thanks")
    assert replies.reply_job_process(job_id=last.pk).result == "done"
    mail.outbox.clear()
    assert alerts.handoffs_flag() == 1
    [staff_mail] = [m for m in mail.outbox if m.to == ["desk@example.com"]]
    assert (
        "Their 3 messages (one burst, oldest first):\n"
        "  > I want to talk to a person\n  >\n  > is there parking?\n  >\n  > thanks\n"
    ) in staff_mail.body


def test_a_voice_note_in_the_burst_is_handed_to_staff(
    intake_path: str, fake_green: Any, fake_deepseek: Any
) -> None:
    last = _burst_written("look at this", "what is it?")
    Message.objects.filter(provider_message_id="BURST-1").update(message_type="audioMessage")  # a voice note
    assert replies.reply_job_process(job_id=last.pk).result == "done"
    assert fake_deepseek.journal(path_regex="chat/completions") == []
    assert Conversation.objects.get().owner_reason == "unreadable_message"
    assert len(fake_green.sent_messages()) == 1


def test_without_the_ai_each_message_of_the_burst_gets_its_faq_answer(
    intake_path: str, fake_green: Any, fake_deepseek: Any
) -> None:
    fake_deepseek.add_fault({"mode": "overloaded"})
    last = _burst_written("What time is check-out?", "and the wifi password?")
    assert replies.reply_job_process(job_id=last.pk).result == "done"
    [sent] = fake_green.sent_messages()
    assert sent["textMessage"].startswith("Check-out at")
    assert "Wi-Fi:" in sent["textMessage"]
    last.refresh_from_db()
    assert last.degraded
