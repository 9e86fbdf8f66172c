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
