"""Dead replies end to end (issue 8): a dead letter in the same transaction as the failure, redrive
through the same pipeline (never a second copy), alerts by mail, answer by hand, the SLA flag,
and one DeliveryAttempt row per step."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from fakes.green_api import FakeGreenApi
from messaging.models import DeliveryAttempt, Hotel, Message, ReplyJob
from messaging.permissions import HOTEL_STAFF_GROUP
from messaging.services import alerts, manual, replies
from reliability import dead_letters, services
from reliability.models import AuditEntry, BreakerConfig, DeadLetter
from tests.factories import ConversationFactory, HotelFactory, MessageFactory, ReplyJobFactory
from tests.messaging import payloads
from tests.messaging.payloads import CHAT

pytestmark = pytest.mark.django_db

CHAT_NUMBER = CHAT.partition("@")[0]
MASKED_CHAT = "***4568@c.us"


def _make_due(job: ReplyJob) -> None:
    ReplyJob.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())


def _run_due_jobs() -> dict[int, str]:
    """One worker pass: every job that is pending is made due and processed once."""
    outcomes: dict[int, str] = {}
    for job_id in ReplyJob.objects.filter(status=ReplyJob.Status.PENDING).values_list("pk", flat=True):
        ReplyJob.objects.filter(pk=job_id).update(next_attempt_at=timezone.now())
        outcomes[job_id] = replies.reply_job_process(job_id=job_id).result
    return outcomes


def _later(hours: float) -> Any:
    return timezone.now() + timedelta(hours=hours)


def _send_fault(fake: FakeGreenApi, **rule: Any) -> None:
    fake.add_fault({"match": {"method_name": "sendMessage"}, **rule})


def _accepted_per_chat(fake: FakeGreenApi) -> Counter[str]:
    return Counter(m["chatId"] for m in fake.sent_messages())


# --- done when #1: an outage longer than all attempts ends with every reply delivered, once ---------
def test_green_api_outage_longer_than_all_attempts_ends_with_every_reply_delivered_exactly_once(
    fake_green, fake_deepseek, settings
):
    # Given the breaker out of the way (so every try reaches the fake) and few attempts per job
    settings.REPLY_MAX_ATTEMPTS = 3
    services.breaker_set_mode(name="green_api", mode=BreakerConfig.Mode.DISABLED, reason="test the DLQ")
    hotel = HotelFactory.create()
    chats = [f"7900555000{i}@c.us" for i in range(3)]
    jobs = [
        ReplyJobFactory.create(
            inbound=MessageFactory.create(
                conversation=ConversationFactory.create(guest__hotel=hotel, guest__chat_id=c)
            )
        )
        for c in chats
    ]
    _send_fault(fake_green, mode="overloaded")  # 503 on every send: Green API is down

    # When every attempt fails, every job dies with its dead letter
    for _ in range(settings.REPLY_MAX_ATTEMPTS):
        _run_due_jobs()
    assert set(ReplyJob.objects.values_list("status", flat=True)) == {ReplyJob.Status.DEAD}
    letters = DeadLetter.objects.order_by("subject_id")
    assert [(dl.kind, dl.category, dl.status, dl.dependency) for dl in letters] == [
        ("reply_send", "provider_5xx", "pending", "green_api")
    ] * 3
    first = letters[0]
    assert (first.subject, first.subject_type, first.subject_id) == (
        f"reply job {jobs[0].pk}",
        "messaging.replyjob",
        jobs[0].pk,
    )
    assert first.tenant == str(hotel.pk)
    assert first.attempts == 3
    assert first.first_failed_at is not None
    assert first.last_failed_at is not None
    assert first.first_failed_at <= first.last_failed_at
    payload = first.payload or {}
    assert payload["guest"]["chat_id"] == "***0000@c.us"
    assert payload["inbound_message_id"] == jobs[0].inbound_id

    # The outage goes on: the beat's redrive runs the jobs again, they die again, same letters
    assert dead_letters.redrive_due(now=_later(1)).retried == 3
    assert set(DeadLetter.objects.values_list("status", flat=True)) == {"retrying"}
    for _ in range(settings.REPLY_MAX_ATTEMPTS):
        _run_due_jobs()
    assert DeadLetter.objects.count() == 3  # one letter per guest, not per try
    assert set(DeadLetter.objects.values_list("status", "redrive_count")) == {("pending", 1)}
    assert fake_green.sent_messages() == []

    # Green API recovers; the next redrive delivers every reply without staff action
    fake_green.clear_faults()
    assert dead_letters.redrive_due(now=_later(3)).retried == 3
    assert set(_run_due_jobs().values()) == {"done"}
    assert _accepted_per_chat(fake_green) == Counter(chats)  # each guest exactly once
    assert set(DeadLetter.objects.values_list("status", flat=True)) == {"resolved"}
    assert all(dl.resolution.startswith("delivered as ") for dl in DeadLetter.objects.all())
    assert dead_letters.redrive_due(now=_later(10)).retried == 0  # nothing left to do
    assert len(fake_green.sent_messages()) == 3


# --- 500/502 after Green API processed the last attempt: redrive reconciles, does not resend --------
@pytest.mark.parametrize("status", [500, 502])
def test_unknown_outcome_at_the_last_attempt_is_reconciled_on_redrive_not_resent(
    job, fake_green, settings, status
):
    settings.REPLY_MAX_ATTEMPTS = 1
    _send_fault(fake_green, mode="error", status=status, after_process=True, count=1)
    assert replies.reply_job_process(job_id=job.pk).result == "dead"
    job.refresh_from_db()
    assert job.send_started_at is not None  # outcome unknown: kept for reconciliation
    letter = DeadLetter.objects.get()
    assert (letter.kind, letter.category, letter.status) == ("reply_send", "provider_5xx", "pending")
    assert str(status) in letter.error_message

    assert dead_letters.redrive_due(now=_later(1)).retried == 1
    job.refresh_from_db()
    assert (job.status, job.attempts) == (ReplyJob.Status.PENDING, 0)
    assert job.send_started_at is not None  # kept by the requeue
    assert replies.reply_job_process(job_id=job.pk).result == "done"

    assert len(fake_green.journal("sendMessage")) == 1  # never sent a second time
    assert len(fake_green.sent_messages()) == 1
    letter.refresh_from_db()
    assert letter.status == "resolved"
    steps = list(DeliveryAttempt.objects.filter(job=job).values_list("step", "outcome", "http_status"))
    assert steps == [
        ("generate", "ok", None),
        ("send", "unknown", status),
        ("reconcile", "ok", 200),
    ]


def test_redriving_a_letter_whose_job_is_done_resolves_it(job, fake_green, settings):
    settings.REPLY_MAX_ATTEMPTS = 1
    _send_fault(fake_green, mode="overloaded", count=1)
    assert replies.reply_job_process(job_id=job.pk).result == "dead"
    letter = DeadLetter.objects.get()
    ReplyJob.objects.filter(pk=job.pk).update(status=ReplyJob.Status.DONE)  # delivered another way
    result = dead_letters.redrive(letter)
    assert (result.resolved, result.detail) == (True, "already delivered")
    letter.refresh_from_db()
    assert letter.status == "resolved"


# --- done when #2: a permanent failure reaches staff by mail; a manual answer reaches the guest once --
def _staff_client(hotel: Hotel, username: str) -> Client:
    user = get_user_model().objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    user.groups.add(Group.objects.get(name=HOTEL_STAFF_GROUP))  # may answer guests by hand
    hotel.staff.add(user)
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(("status", "category"), [(401, "auth"), (400, "validation")])
def test_permanent_failure_mails_staff_and_a_manual_answer_from_admin_reaches_the_guest_once(
    job, fake_green, settings, django_capture_on_commit_callbacks, status, category
):
    settings.ADMINS = [("Ops", "ops@example.com")]
    hotel = job.inbound.conversation.hotel
    Hotel.objects.filter(pk=hotel.pk).update(staff_email="desk@seaside.example")
    hotel.refresh_from_db()
    _send_fault(fake_green, mode="error", status=status, count=1)

    with django_capture_on_commit_callbacks(execute=True):
        assert replies.reply_job_process(job_id=job.pk).result == "dead"

    letter = DeadLetter.objects.get()
    assert (letter.category, letter.status) == (category, "manual")
    assert letter.alerted_at is not None
    assert sorted(m.to[0] for m in mail.outbox) == ["desk@seaside.example", "ops@example.com"]
    for message in mail.outbox:
        text = f"{message.subject}\n{message.body}"
        assert "What time is check-out?" in message.body  # their question
        assert MASKED_CHAT in text
        assert CHAT_NUMBER not in text  # never the full number
        assert "Seaside Inn" in text
        assert str(status) in message.body  # why
        assert f"http://127.0.0.1:8000/admin/messaging/replyjob/{job.pk}/answer/" in message.body

    # The hotel's staff answer by hand from admin
    client = _staff_client(hotel, "desk")
    url = reverse("admin:messaging_replyjob_answer", args=[job.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert "What time is check-out?" in page.content.decode()
    assert MASKED_CHAT in page.content.decode()
    assert CHAT_NUMBER not in page.content.decode()
    with django_capture_on_commit_callbacks(execute=False):
        posted = client.post(url, {"text": "Check-out is at 12:00 for you, Ana."})
    assert posted.status_code == 302
    assert "on its way" in client.get(url).content.decode()
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    assert replies.reply_job_process(job_id=job.pk).result == "skipped"

    manual_sends = [
        m for m in fake_green.sent_messages() if m["textMessage"] == "Check-out is at 12:00 for you, Ana."
    ]
    assert len(manual_sends) == 1  # the guest got the staff answer exactly once
    assert len(fake_green.sent_messages()) == 1  # and not the refused automatic reply
    letter.refresh_from_db()
    assert letter.status == "resolved"
    assert letter.resolution.startswith("answered by hand")
    job.refresh_from_db()
    assert job.reply_text == "Check-out is at 12:00 for you, Ana."
    assert job.outbound is not None
    assert job.outbound.status == Message.Status.ACCEPTED
    entry = AuditEntry.objects.get(action="reply.answer_manually")
    assert (entry.actor_name, entry.via, entry.tenant) == ("desk", "admin", str(hotel.pk))


def test_another_hotels_staff_get_404_on_the_answer_page(job):
    other = HotelFactory.create(name="Hill Lodge", green_api_instance_id="1101000002")
    client = _staff_client(other, "hill")
    url = reverse("admin:messaging_replyjob_answer", args=[job.pk])
    assert client.get(url).status_code == 404
    assert client.post(url, {"text": "hello"}).status_code == 404
    job.refresh_from_db()
    assert job.manual_text == ""
    assert not AuditEntry.objects.exists()


def test_manual_answer_refusals(job, fake_green):
    with pytest.raises(manual.ValidationFailed):
        manual.reply_answer_manually(job_id=job.pk, text="   ", actor=None, via="admin")
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    with pytest.raises(manual.ValidationFailed, match="already delivered"):
        manual.reply_answer_manually(job_id=job.pk, text="More?", actor=None, via="admin")
    other = HotelFactory.create(name="Hill Lodge", green_api_instance_id="1101000002")
    stranger = get_user_model().objects.create_user("hill", "h@example.com", "pw", is_staff=True)
    other.staff.add(stranger)
    with pytest.raises(manual.NotFound):
        manual.reply_answer_manually(
            job_id=job.pk, text="Hi", actor=stranger, via="admin", allow_after_delivery=True
        )
    # Explicitly allowed: a follow-up after the delivered reply, sent once.
    manual.reply_answer_manually(
        job_id=job.pk, text="Anything else?", actor=None, via="admin", allow_after_delivery=True
    )
    # Once the next claim has switched that answer in, a second one is refused until it settles.
    ReplyJob.objects.filter(pk=job.pk).update(manual_text="")
    with pytest.raises(manual.ValidationFailed, match="being sent already"):
        manual.reply_answer_manually(job_id=job.pk, text="Again?", actor=None, via="admin")


def test_manual_answer_after_an_unknown_send_settles_it_and_never_sends_the_old_text_twice(
    job, fake_green, settings
):
    # The automatic reply's last attempt got a 502 after Green API had sent it: the guest has it.
    settings.REPLY_MAX_ATTEMPTS = 1
    _send_fault(fake_green, mode="error", status=502, after_process=True, count=1)
    assert replies.reply_job_process(job_id=job.pk).result == "dead"
    job.refresh_from_db()
    old_outbound, old_text = job.outbound, job.reply_text
    assert old_outbound is not None
    assert job.send_started_at is not None

    manual.reply_answer_manually(
        job_id=job.pk, text="Staff here: check-out is 11:00.", actor=None, via="admin"
    )
    assert replies.reply_job_process(job_id=job.pk).result == "done"

    texts = Counter(m["textMessage"] for m in fake_green.sent_messages())
    assert texts == Counter({old_text: 1, "Staff here: check-out is 11:00.": 1})
    assert len(fake_green.journal("sendMessage")) == 2
    old_outbound.refresh_from_db()
    assert old_outbound.status == Message.Status.ACCEPTED  # recorded as delivered after all
    assert old_outbound.provider_message_id
    job.refresh_from_db()
    assert job.outbound is not None
    assert job.outbound.pk != old_outbound.pk
    assert DeadLetter.objects.get().status == "resolved"


# --- every delivery attempt is a row ---------------------------------------------------------------
def test_retry_then_success_leaves_one_row_per_step(job, fake_green):
    _send_fault(fake_green, mode="overloaded", count=1)
    assert replies.reply_job_process(job_id=job.pk).result == "retry"
    _make_due(job)
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    rows = list(DeliveryAttempt.objects.filter(job=job).order_by("started_at", "pk"))
    assert [(r.attempt, r.step, r.outcome, r.http_status) for r in rows] == [
        (1, "generate", "ok", None),
        (1, "send", "not_sent", 503),
        (2, "send", "ok", 200),
    ]
    assert "503" in rows[1].error
    assert all(r.duration_ms >= 0 for r in rows)
    assert not DeadLetter.objects.exists()


def test_degraded_generation_is_a_row(job, fake_green, fake_deepseek):
    fake_deepseek.add_fault({"mode": "overloaded"})
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    generate = DeliveryAttempt.objects.get(job=job, step="generate")
    assert (generate.outcome, generate.http_status) == ("degraded", 503)


# --- the SLA: a guest waiting too long is flagged once ------------------------------------------------
def test_a_guest_waiting_past_the_sla_is_mailed_once(job, settings):
    settings.REPLY_SLA_SECONDS = 300
    settings.ADMINS = [("Ops", "ops@example.com")]
    Hotel.objects.filter(pk=job.inbound.conversation.hotel_id).update(staff_email="desk@seaside.example")
    answered = ReplyJobFactory.create(
        inbound=MessageFactory.create(conversation=job.inbound.conversation, text="Thanks"),
        status=ReplyJob.Status.DONE,
    )
    fresh = ReplyJobFactory.create(
        inbound=MessageFactory.create(conversation=job.inbound.conversation, text="New")
    )
    Message.objects.filter(pk__in=[job.inbound_id, answered.inbound_id]).update(
        created_at=timezone.now() - timedelta(seconds=400)
    )

    assert alerts.reply_jobs_flag_sla() == 1
    assert sorted(m.to[0] for m in mail.outbox) == ["desk@seaside.example", "ops@example.com"]
    body = mail.outbox[0].body
    assert "waiting" in mail.outbox[0].subject
    assert "What time is check-out?" in body
    assert MASKED_CHAT in body
    assert CHAT_NUMBER not in body
    assert f"/admin/messaging/replyjob/{job.pk}/answer/" in body
    assert alerts.reply_jobs_flag_sla() == 0  # once per job
    assert len(mail.outbox) == 2
    job.refresh_from_db()
    fresh.refresh_from_db()
    assert job.sla_alerted_at is not None
    assert fresh.sla_alerted_at is None


def test_sla_beat_task_is_scheduled(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["messaging.flag_reply_sla"]
    assert (entry["task"], entry["schedule"]) == ("messaging.tasks.flag_reply_sla", 60.0)


# --- handler wiring -----------------------------------------------------------------------------------
def test_reply_kinds_have_a_handler_with_links(job, fake_green, settings):
    settings.REPLY_MAX_ATTEMPTS = 1
    _send_fault(fake_green, mode="error", status=400, count=1)
    assert replies.reply_job_process(job_id=job.pk).result == "dead"
    letter = DeadLetter.objects.get()
    handler = dead_letters.handler_for(letter.kind)
    assert handler is dead_letters.handler_for(DeadLetter.Kind.REPLY_GENERATION)
    links = dict(handler.links(letter))  # type: ignore[union-attr]
    assert links["Answer by hand"] == f"/admin/messaging/replyjob/{job.pk}/answer/"
    assert links["Reply job"] == f"/admin/messaging/replyjob/{job.pk}/change/"
    assert links["Guest message"] == f"/admin/messaging/message/{job.inbound_id}/change/"


def test_quarantined_notification_of_a_known_hotel_carries_its_tenant(webhook_client):
    hotel = HotelFactory.create()
    body = payloads.incoming_text(id_message="BAD")
    body["messageData"]["typeMessage"] = "x" * 41
    assert webhook_client.post("/webhooks/green-api/", body, format="json").json() == {
        "status": "quarantined"
    }
    unknown = payloads.incoming_text(id_message="BAD2", id_instance=999)
    unknown["messageData"]["typeMessage"] = "x" * 41
    webhook_client.post("/webhooks/green-api/", unknown, format="json")
    tenants = dict(DeadLetter.objects.values_list("subject", "tenant"))
    assert tenants == {"1101000001": str(hotel.pk), "999": ""}
