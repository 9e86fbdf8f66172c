# ruff: noqa: RUF001 - Russian texts: their letters are meant
"""Issue 19 items 8 and 9 through the reply pipeline: STOP opts a guest out (confirmed once, the
bot silent, the send fence refusing), their next message clears it; the guest's language and the
hotel's own texts in what the bot says. Runs on SQLite and on PostgreSQL (the race: PostgreSQL)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from prometheus_client import REGISTRY

from messaging.bot_texts import DEFAULTS
from messaging.models import Conversation, Guest, HotelText, ReplyJob
from messaging.services import handoff, opt_out, replies
from reliability.models import AuditEntry, DeadLetter
from tests.factories import ConversationFactory, HotelFactory, MessageFactory, ReplyJobFactory
from tests.messaging.payloads import CHAT

pytestmark = pytest.mark.django_db
CONFIRM = DEFAULTS["opt_out"]


@pytest.fixture
def conversation() -> Conversation:
    return ConversationFactory.create(guest__hotel=HotelFactory.create(), guest__chat_id=CHAT)


def _job(conversation: Conversation, text: str = "What time is check-out?", **kw) -> ReplyJob:
    return ReplyJobFactory.create(inbound=MessageFactory.create(conversation=conversation, text=text, **kw))


def _sent(fake_green) -> list[str]:
    return [m["body"]["message"] for m in fake_green.journal("sendMessage")]


def _ai_calls(fake_deepseek) -> list[dict]:
    return fake_deepseek.journal(path_regex="chat/completions")


def _guest(conversation: Conversation) -> Guest:
    return Guest.objects.get(pk=conversation.guest_id)


# --- STOP: one confirmation, then silence ------------------------------------------------------------
def _opt_outs() -> float:
    return REGISTRY.get_sample_value("hotelbot_opt_outs_total") or 0.0


@pytest.mark.django_db(transaction=True)  # the counter moves on commit
def test_stop_confirms_once_closes_earlier_bot_replies_and_calls_no_ai(
    conversation, fake_green, fake_deepseek
):
    opt_outs = _opt_outs()
    earlier = _job(conversation, "Is the pool open?")  # its answer not sent yet
    stop = _job(conversation, "STOP")
    assert replies.reply_job_process(job_id=stop.pk).result == "done"
    stop.refresh_from_db()
    assert (stop.kind, stop.reply_text) == (ReplyJob.Kind.OPT_OUT, CONFIRM["en"])
    assert _sent(fake_green) == [CONFIRM["en"]]
    guest = _guest(conversation)
    assert guest.opted_out_at is not None
    assert guest.opt_out_message_id == stop.inbound_id
    earlier.refresh_from_db()
    assert (earlier.status, earlier.last_error) == ("superseded", "not sent: the guest opted out")
    assert replies.reply_job_process(job_id=earlier.pk).result == "skipped"
    assert _ai_calls(fake_deepseek) == []

    assert _opt_outs() == opt_outs + 1

    again = _job(conversation, "stop!")  # a second STOP: not confirmed twice, nor counted
    assert replies.reply_job_process(job_id=again.pk).result == "superseded"
    assert len(_sent(fake_green)) == 1
    assert _opt_outs() == opt_outs + 1
    assert not DeadLetter.objects.exists()


@pytest.mark.parametrize(
    ("text", "guest_language", "expected"),
    [
        ("Отписаться", "", "ru"),  # the phrase's own language
        ("Abmelden!", "en", "de"),
        ("STOP", "es", "es"),  # STOP says nothing of a language: the guest's
        ("STOP", "", "en"),
    ],
)
def test_the_confirmation_is_in_the_guests_language(conversation, fake_green, text, guest_language, expected):
    Guest.objects.filter(pk=conversation.guest_id).update(language=guest_language)
    job = _job(conversation, text)
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    assert _sent(fake_green) == [CONFIRM[expected]]


def test_the_send_fence_refuses_a_bot_reply_to_a_guest_who_opted_out_meanwhile(
    conversation, fake_green, fake_deepseek, monkeypatch
):
    """The opt-out lands between the answer's generation and its send, without touching the job:
    the fence's UPDATE (the same one that checks the owner) refuses it; superseded, never sent."""
    job = _job(conversation)
    real = replies._earlier_reply_unsent

    def opted_out_now(j: ReplyJob):
        Guest.objects.filter(pk=conversation.guest_id).update(opted_out_at=timezone.now())
        return real(j)

    monkeypatch.setattr(replies, "_earlier_reply_unsent", opted_out_now)
    assert replies.reply_job_process(job_id=job.pk).result == "superseded"
    job.refresh_from_db()
    assert job.outbound is not None
    assert (job.status, job.outbound.status) == ("superseded", "failed")
    assert len(_ai_calls(fake_deepseek)) == 1  # generated, never sent
    assert _sent(fake_green) == []


def test_the_confirmation_is_not_sent_once_the_guest_wrote_again(conversation, fake_green, monkeypatch):
    """The guest writes again after the opt-out committed and that message's job clears it before
    the confirmation leaves: the confirmation's fence (still opted out by this STOP) refuses it."""
    stop = _job(conversation, "STOP")
    real = replies._earlier_reply_unsent

    def guest_wrote_again(j: ReplyJob):
        later = MessageFactory.create(conversation=conversation, text="Sorry, wrong chat. Breakfast time?")
        assert opt_out.guest_opt_in(guest_id=conversation.guest_id, message_id=later.pk)
        return real(j)

    monkeypatch.setattr(replies, "_earlier_reply_unsent", guest_wrote_again)
    assert replies.reply_job_process(job_id=stop.pk).result == "superseded"
    assert _sent(fake_green) == []
    assert _guest(conversation).opted_out_at is None


# --- the guest writes again ---------------------------------------------------------------------------
def test_the_guests_next_message_clears_the_opt_out_and_is_answered(conversation, fake_green, fake_deepseek):
    stop = _job(conversation, "unsubscribe")
    replies.reply_job_process(job_id=stop.pk)
    question = _job(conversation, "Hello again, what time is check-out?")
    assert replies.reply_job_process(job_id=question.pk).result == "done"
    guest = _guest(conversation)
    assert (guest.opted_out_at, guest.opt_out_message_id) == (None, question.inbound_id)
    assert len(_sent(fake_green)) == 2
    assert len(_ai_calls(fake_deepseek)) == 1


def test_a_stop_the_guest_wrote_before_their_last_message_changes_nothing(conversation, fake_green):
    stop = _job(conversation, "STOP")
    _job(conversation, "Actually, is the bar open?")  # written after the STOP, not processed yet
    assert replies.reply_job_process(job_id=stop.pk).result == "superseded"
    assert _guest(conversation).opted_out_at is None
    assert _sent(fake_green) == []


def test_an_earlier_message_processed_late_neither_clears_nor_is_answered(
    conversation, fake_green, fake_deepseek
):
    earlier = _job(conversation, "Is the pool open?")
    stop = _job(conversation, "STOP")
    # The earlier job was already being generated when the STOP came (no takeover closes it).
    ReplyJob.objects.filter(pk=earlier.pk).update(status=ReplyJob.Status.DONE)
    replies.reply_job_process(job_id=stop.pk)
    ReplyJob.objects.filter(pk=earlier.pk).update(status=ReplyJob.Status.PENDING)
    assert replies.reply_job_process(job_id=earlier.pk).result == "superseded"
    assert _guest(conversation).opted_out_at is not None
    assert _sent(fake_green) == [CONFIRM["en"]]
    assert _ai_calls(fake_deepseek) == []


def test_staff_replies_still_reach_an_opted_out_guest(conversation, fake_green):
    replies.reply_job_process(job_id=_job(conversation, "STOP").pk)
    user = get_user_model().objects.create_superuser("frida", "frida@example.com", "pw")
    job = handoff.staff_reply_queue(
        conversation_id=conversation.pk, text="Your taxi is here.", actor=user, via="api"
    )
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    assert _sent(fake_green) == [CONFIRM["en"], "Your taxi is here."]


def test_staff_clear_the_opt_out_audited_and_only_for_their_hotels(conversation):
    Guest.objects.filter(pk=conversation.guest_id).update(opted_out_at=timezone.now())
    other = ConversationFactory.create(
        guest__hotel=HotelFactory.create(name="Other", green_api_instance_id="1101000099")
    )
    Guest.objects.filter(pk=other.guest_id).update(opted_out_at=timezone.now())
    user = get_user_model().objects.create_superuser("frida", "frida@example.com", "pw")
    mine = Guest.objects.filter(hotel=conversation.hotel)  # the admin's scoped queryset
    assert opt_out.guests_opt_out_clear(guests=mine, actor=user, via="admin") == 1
    assert opt_out.guests_opt_out_clear(guests=mine, actor=user, via="admin") == 0
    assert _guest(conversation).opted_out_at is None
    assert Guest.objects.get(pk=other.guest_id).opted_out_at is not None
    [entry] = AuditEntry.objects.filter(action="guest.opt_out_clear")
    assert entry.tenant == str(conversation.hotel_id)
    assert CHAT.split("@")[0] not in str(entry.details)  # the number masked


# --- the guest's language and the hotel's texts -------------------------------------------------------
def test_the_guests_language_is_detected_kept_and_given_to_the_ai(conversation, fake_green, fake_deepseek):
    replies.reply_job_process(job_id=_job(conversation, "Bonjour, à quelle heure est le départ ?").pk)
    assert _guest(conversation).language == "fr"
    replies.reply_job_process(job_id=_job(conversation, "ok").pk)  # too short to tell: still French
    assert _guest(conversation).language == "fr"
    prompts = [c["body"]["messages"][0]["content"] for c in _ai_calls(fake_deepseek)]
    assert all("The guest writes in French: answer in French." in p for p in prompts)


def test_the_fallback_answer_is_in_the_guests_language(conversation, fake_green, fake_deepseek):
    fake_deepseek.add_fault({"mode": "overloaded"})
    job = _job(conversation, "Во сколько выезд из отеля?")
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    assert _sent(fake_green) == ["Выезд из отеля Seaside Inn: until 11:00. Чем ещё могу помочь?"]


def test_a_voice_note_gets_please_type_in_the_guests_language(conversation, fake_green):
    Guest.objects.filter(pk=conversation.guest_id).update(language="es")
    job = _job(conversation, "", message_type="audioMessage")
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    [sent] = _sent(fake_green)
    assert sent.startswith("¡Gracias! Solo puedo leer mensajes de texto: por favor, escriba su pregunta.")
    assert sent.endswith("También puede contactarnos: reception, dial 9.")


def test_the_hotels_own_text_replaces_the_default_for_its_language_only(conversation, fake_green):
    hotel = conversation.hotel
    HotelText.objects.create(hotel=hotel, key="opt_out", language="de", text="Alles klar, Funkstille.")
    HotelText.objects.create(hotel=hotel, key="notice", language="de", text="Die Rezeption meldet sich.")
    other = HotelFactory.create(name="Other", green_api_instance_id="1101000099")
    HotelText.objects.create(hotel=other, key="opt_out", language="ru", text="Не от этого отеля.")
    replies.reply_job_process(job_id=_job(conversation, "Ich möchte mit einem Menschen sprechen").pk)
    replies.reply_job_process(job_id=_job(conversation, "Abmelden").pk)
    replies.reply_job_process(job_id=_job(conversation, "Отписаться").pk)  # opted out already: nothing
    assert _sent(fake_green) == [
        "Die Rezeption meldet sich. Sie erreichen uns auch so: reception, dial 9.",
        "Alles klar, Funkstille.",
    ]


# --- a STOP racing the send fence, on two PostgreSQL connections ---------------------------------------
def test_a_stop_committed_while_the_fence_waits_means_never_sent(
    transactional_db, fake_green, fake_deepseek, monkeypatch
):
    import threading

    from django.db import connection

    from tests.messaging.services.test_handoff import _a_backend_waits_on_a_lock, _in_thread

    if connection.vendor != "postgresql":
        pytest.skip("two sessions racing on row locks: PostgreSQL")
    conversation = ConversationFactory.create(guest__hotel=HotelFactory.create(), guest__chat_id=CHAT)
    answer = _job(conversation)
    stop = _job(conversation, "STOP")
    at_fence, go_fence, stopping, commit = (threading.Event() for _ in range(4))
    real_order, real_supersede = replies._earlier_reply_unsent, handoff.guest_bot_jobs_supersede

    def pause_before_fence(j):
        if j.pk == answer.pk:
            at_fence.set()
            assert go_fence.wait(10)
        return real_order(j)

    def pause_before_commit(**kw):
        ids = real_supersede(**kw)
        stopping.set()  # the guest and the answer's job rows are locked and changed, not committed
        assert commit.wait(10)
        return ids

    monkeypatch.setattr(replies, "_earlier_reply_unsent", pause_before_fence)
    monkeypatch.setattr(handoff, "guest_bot_jobs_supersede", pause_before_commit)
    results: dict = {}
    worker = _in_thread(lambda: replies.reply_job_process(job_id=answer.pk), results, "worker")
    assert at_fence.wait(10)  # the answer is generated; the next write is the fence
    stopper = _in_thread(lambda: replies.reply_job_process(job_id=stop.pk), results, "stopper")
    assert stopping.wait(10)
    go_fence.set()
    assert _a_backend_waits_on_a_lock()  # the fence's UPDATE waits for the STOP's row lock
    commit.set()
    worker.join(10)
    stopper.join(10)
    assert results["worker"].result == "lease_lost"
    assert results["stopper"].result == "done"
    answer.refresh_from_db()
    assert answer.status == ReplyJob.Status.SUPERSEDED
    assert [m["textMessage"] for m in fake_green.sent_messages()] == [CONFIRM["en"]]
