"""Staff alerts of guests the bot handed to staff (``alerts.handoffs_flag``, run with the SLA check)."""

from __future__ import annotations

import pytest
from django.core import mail

from messaging.models import Conversation, ReplyJob
from messaging.services import alerts, handoff, replies
from tests.factories import ConversationFactory, HotelFactory, MessageFactory, ReplyJobFactory

pytestmark = pytest.mark.django_db

CHAT = "79005554567@c.us"


def _asks_for_a_person(fake_green, fake_deepseek) -> ReplyJob:
    hotel = HotelFactory.create(staff_email="desk@example.com")
    conversation = ConversationFactory.create(guest__hotel=hotel, guest__chat_id=CHAT)
    inbound = MessageFactory.create(conversation=conversation, text="I want to talk to a person")
    job = ReplyJobFactory.create(inbound=inbound)
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    job.refresh_from_db()
    assert job.kind == ReplyJob.Kind.HANDOFF
    return job


def test_a_handoff_mails_the_hotels_staff_once_with_the_number_masked(fake_green, fake_deepseek, settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    job = _asks_for_a_person(fake_green, fake_deepseek)
    mail.outbox.clear()
    assert alerts.handoffs_flag() == 1
    staff_mail = next(m for m in mail.outbox if m.to == ["desk@example.com"])
    assert "A guest is waiting for a person" in staff_mail.subject
    assert "the guest asked for a person" in staff_mail.body
    assert "I want to talk to a person" in staff_mail.body
    assert "4567" in staff_mail.body
    assert "79005554567" not in f"{staff_mail.subject}\n{staff_mail.body}"
    assert f"/admin/messaging/replyjob/{job.pk}/answer/" in staff_mail.body
    assert f"staff inbox: {settings.SITE_URL}/admin/inbox/{job.inbound.conversation_id}/" in staff_mail.body
    assert any(m.to == ["ops@example.com"] for m in mail.outbox)  # ADMINS too
    mail.outbox.clear()
    assert alerts.handoffs_flag() == 0  # once per handoff
    assert mail.outbox == []


def test_a_conversation_staff_took_already_is_not_mailed(fake_green, fake_deepseek):
    job = _asks_for_a_person(fake_green, fake_deepseek)
    conversation = job.inbound.conversation
    handoff.conversation_take(conversation_id=conversation.pk, actor=None, via="test")
    assert Conversation.objects.get(pk=conversation.pk).owner == Conversation.Owner.STAFF
    mail.outbox.clear()
    assert alerts.handoffs_flag() == 0
    assert mail.outbox == []
    job.refresh_from_db()
    assert job.sla_alerted_at is not None  # looked at once, not again


def test_a_failing_mail_is_tried_again_next_run(fake_green, fake_deepseek, monkeypatch):
    job = _asks_for_a_person(fake_green, fake_deepseek)

    def refuse(alert: alerts.Alert) -> None:
        raise OSError("SMTP refused")

    monkeypatch.setattr(alerts, "_send", refuse)
    assert alerts.handoffs_flag() == 0
    job.refresh_from_db()
    assert job.sla_alerted_at is None
    monkeypatch.undo()
    assert alerts.handoffs_flag() == 1


def test_a_long_burst_is_quoted_bounded_the_latest_first(fake_green, fake_deepseek, settings):
    """Twelve messages merged into the handoff's job: the mail quotes the latest ten, within the
    character budget (the oldest kept one cut), and says how many it left out."""
    hotel = HotelFactory.create(staff_email="desk@example.com")
    conversation = ConversationFactory.create(guest__hotel=hotel, guest__chat_id=CHAT)
    earlier = [
        MessageFactory.create(conversation=conversation, text=f"message {n} " + "x" * 400) for n in range(12)
    ]
    job = ReplyJobFactory.create(
        inbound=MessageFactory.create(conversation=conversation, text="I want to talk to a person")
    )
    for message in earlier:
        ReplyJobFactory.create(inbound=message, status=ReplyJob.Status.MERGED, merged_into=job)
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    mail.outbox.clear()
    assert alerts.handoffs_flag() == 1
    body = next(m for m in mail.outbox if m.to == ["desk@example.com"]).body
    assert "Their 13 messages (one burst, oldest first):" in body
    assert "I want to talk to a person" in body  # the latest (the job's own) is kept whole
    assert "message 11 " in body
    assert "message 0 " not in body
    quoted = [line for line in body.splitlines() if line.startswith("  > ")]
    assert sum(len(line) - 4 for line in quoted) <= alerts.QUOTE_MAX_CHARS
    shown = len([line for line in quoted if line.startswith("  > message")]) + 1
    assert f"  ({13 - shown} earlier not shown: the staff inbox has them all)" in body
    assert quoted[0].endswith("…")
