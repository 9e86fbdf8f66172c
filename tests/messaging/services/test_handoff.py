"""Issue 19: who answers a conversation. Handoff triggers, the one notice, staff takeover (console,
reply, the hotel's phone), the takeover rule and the send fence, staff replies exactly once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from hotelbot.exceptions import NotFound
from messaging.models import Conversation, Message, ReplyJob
from messaging.selectors import reply_jobs_overdue, reply_stats
from messaging.services import handoff, replies
from reliability.models import AuditEntry, DeadLetter
from tests.factories import ConversationFactory, HotelFactory, MessageFactory, ReplyJobFactory
from tests.messaging import payloads
from tests.messaging.payloads import CHAT

pytestmark = pytest.mark.django_db
URL = "/webhooks/green-api/"
NOTICE = "A member of our staff will answer you here."


@pytest.fixture
def conversation() -> Conversation:
    return ConversationFactory.create(guest__hotel=HotelFactory.create(), guest__chat_id=CHAT)


@pytest.fixture
def staff_user():
    return get_user_model().objects.create_superuser("frida", "frida@example.com", "pw")


def _job(conversation: Conversation, text: str = "What time is check-out?", **kw) -> ReplyJob:
    return ReplyJobFactory.create(inbound=MessageFactory.create(conversation=conversation, text=text, **kw))


def _sends(fake_green) -> list[dict]:
    return fake_green.journal("sendMessage")


def _ai_calls(fake_deepseek) -> list[dict]:
    return fake_deepseek.journal(path_regex="chat/completions")


def _owner(conversation: Conversation) -> tuple[str, str]:
    conversation.refresh_from_db()
    return conversation.owner, conversation.owner_reason


# --- triggers: one honest notice, then the conversation waits for staff ---------------------------
def test_guest_asking_for_a_person_gets_one_notice_without_ai_and_then_no_bot_answer(
    conversation, fake_green, fake_deepseek
):
    first = _job(conversation, "I want to talk to a person, please")
    assert replies.reply_job_process(job_id=first.pk).result == "done"
    first.refresh_from_db()
    assert first.kind == ReplyJob.Kind.HANDOFF
    assert (
        first.reply_text
        == f"Thank you for your message. {NOTICE} You can also reach them: reception, dial 9."
    )
    assert _owner(conversation) == ("waiting", "guest_asked")
    [send] = _sends(fake_green)
    assert send["body"]["message"] == first.reply_text
    assert _ai_calls(fake_deepseek) == []

    second = _job(conversation, "Hello? What time is check-out?")
    outcome = replies.reply_job_process(job_id=second.pk)
    assert outcome.result == "superseded"
    second.refresh_from_db()
    assert second.status == ReplyJob.Status.SUPERSEDED
    assert second.outbound is None
    assert len(_sends(fake_green)) == 1  # no bot answer, no second notice
    assert _ai_calls(fake_deepseek) == []
    assert not DeadLetter.objects.exists()


@pytest.mark.parametrize(
    ("text", "reason", "notice"),
    [
        ("Fire in room 12!", "emergency", "If anyone is in danger"),
        ("Я хочу пожаловаться, жалоба на шум", "complaint", "Вам ответит здесь сотрудник отеля."),
        ("Quiero hablar con una persona", "guest_asked", "Un miembro de nuestro personal"),
        ("Ich habe eine Beschwerde", "complaint", "Ein Mitarbeiter unseres Hauses"),
        ("Je veux parler à quelqu'un", "guest_asked", "Un membre de notre équipe"),
    ],
)
def test_keywords_per_language_pick_the_reason_and_the_notices_language(
    conversation, fake_green, fake_deepseek, text, reason, notice
):
    job = _job(conversation, text)
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    job.refresh_from_db()
    assert notice in job.reply_text
    assert _owner(conversation) == ("waiting", reason)
    assert _ai_calls(fake_deepseek) == []


def test_media_gets_the_notice_and_the_conversation_waits(conversation, fake_green, fake_deepseek):
    job = _job(conversation, "", message_type="audioMessage")
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    job.refresh_from_db()
    assert (job.kind, NOTICE in job.reply_text) == (ReplyJob.Kind.HANDOFF, True)
    assert _owner(conversation) == ("waiting", "unreadable_message")
    assert len(_sends(fake_green)) == 1


def test_ai_marker_becomes_the_notice_and_is_never_sent(conversation, fake_green, fake_deepseek):
    job = _job(conversation, "Can I bring my dog?")  # the facts cannot answer: the fake marks it
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    [call] = _ai_calls(fake_deepseek)
    assert "[HANDOFF:<reason>]" in call["body"]["messages"][0]["content"]  # the prompt asks for it
    job.refresh_from_db()
    assert job.kind == ReplyJob.Kind.HANDOFF
    assert _owner(conversation) == ("waiting", "ai_signal")
    [send] = _sends(fake_green)
    assert "HANDOFF" not in send["body"]["message"]
    assert NOTICE in send["body"]["message"]
    attempt = job.delivery_attempts.get(step="generate")
    assert "the AI asked for a person: unknown" in attempt.error


def test_ai_down_and_no_faq_answer_gives_the_notice_not_an_empty_promise(
    conversation, fake_green, fake_deepseek
):
    fake_deepseek.add_fault({"mode": "overloaded"})
    job = _job(conversation, "Can I bring my dog?")
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    job.refresh_from_db()
    assert job.kind == ReplyJob.Kind.HANDOFF
    assert job.degraded  # the AI was down
    assert "get back to you shortly" not in job.reply_text
    assert NOTICE in job.reply_text
    assert _owner(conversation) == ("waiting", "fallback")


def test_ai_down_with_a_faq_answer_still_answers(conversation, fake_green, fake_deepseek):
    fake_deepseek.add_fault({"mode": "overloaded"})
    job = _job(conversation, "What time is check-out?")
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    job.refresh_from_db()
    assert (job.kind, job.reply_text.startswith("Check-out at Seaside Inn")) == (ReplyJob.Kind.ANSWER, True)
    assert _owner(conversation) == ("bot", "")


def test_a_dead_reply_makes_the_conversation_wait_and_its_redrive_hands_it_back(
    conversation, fake_green, fake_deepseek
):
    job = _job(conversation)
    fake_green.add_fault({"match": {"method_name": "sendMessage"}, "mode": "error", "status": 400})
    assert replies.reply_job_process(job_id=job.pk).result == "dead"
    assert _owner(conversation) == ("waiting", "dead_reply")
    assert DeadLetter.objects.count() == 1
    fake_green.clear_faults()
    # Flagged for staff, but the guest was told nothing: the bot still answers their next message.
    later = _job(conversation, "Is there parking?")
    assert replies.reply_job_process(job_id=later.pk).result == "done"
    assert _owner(conversation) == ("waiting", "dead_reply")
    assert replies.reply_jobs_requeue(job_ids=[job.pk]) == 1
    assert _owner(conversation) == ("bot", "handed_back")  # the redrive is the bot trying again
    assert replies.reply_job_process(job_id=job.pk).result == "done"


# --- takeover: the rule and the fence --------------------------------------------------------------
def test_takeover_while_a_reply_is_generated_stops_it_before_sending(
    conversation, fake_green, fake_deepseek, staff_user
):
    job = _job(conversation)
    claimed = replies._claim(job.pk, timezone.now())
    assert claimed is not None
    handoff.conversation_take(conversation_id=conversation.pk, actor=staff_user, via="admin")
    assert replies._process_claimed(claimed).result == "lease_lost"  # its next fenced write fails
    job.refresh_from_db()
    assert job.status == ReplyJob.Status.SUPERSEDED
    assert job.lease_token == ""
    assert _sends(fake_green) == []
    assert not DeadLetter.objects.exists()
    assert _owner(conversation) == ("staff", "staff_took")
    entry = AuditEntry.objects.get(action="conversation.take")
    assert (entry.tenant, entry.details["superseded_jobs"]) == (str(conversation.hotel_id), [job.pk])


def test_takeover_marks_an_unsent_outbound_message_failed_and_leaves_a_started_send(
    conversation, fake_green, staff_user
):
    unsent_out = MessageFactory.create(
        conversation=conversation, direction="out", status="pending", provider_message_id=None
    )
    unsent = _job(conversation)
    ReplyJob.objects.filter(pk=unsent.pk).update(
        outbound=unsent_out, reply_text="Hi", status="pending_provider_recovery"
    )
    started = _job(conversation)
    ReplyJob.objects.filter(pk=started.pk).update(send_started_at=timezone.now(), status="pending")
    handoff.conversation_take(conversation_id=conversation.pk, actor=staff_user, via="admin")
    unsent.refresh_from_db()
    started.refresh_from_db()
    unsent_out.refresh_from_db()
    assert unsent.status == ReplyJob.Status.SUPERSEDED
    assert (unsent_out.status, unsent_out.status_detail) == ("failed", "not sent: staff took over")
    assert started.status == ReplyJob.Status.PENDING  # it may have gone out: left to finish


def test_owner_change_between_generation_and_send_is_caught_by_the_fence(
    conversation, fake_green, monkeypatch
):
    """A conversation that stops being the bot's without a takeover touching the job (here: set
    directly) is caught by the owner condition of the fence's UPDATE: superseded, never sent."""
    job = _job(conversation)
    real = replies._earlier_reply_unsent

    def owner_changes_now(j: ReplyJob):
        Conversation.objects.filter(pk=conversation.pk).update(owner="waiting", owner_reason="guest_asked")
        return real(j)

    monkeypatch.setattr(replies, "_earlier_reply_unsent", owner_changes_now)
    assert replies.reply_job_process(job_id=job.pk).result == "superseded"
    job.refresh_from_db()
    assert job.outbound is not None
    assert (job.status, job.outbound.status) == ("superseded", "failed")
    assert job.outbound.status_detail == "not sent: staff took over"
    assert _sends(fake_green) == []


def test_hand_back_lets_the_bot_answer_again(conversation, fake_green, fake_deepseek, staff_user):
    handoff.conversation_take(conversation_id=conversation.pk, actor=staff_user, via="api")
    handoff.conversation_hand_back(conversation_id=conversation.pk, actor=staff_user, via="api")
    assert _owner(conversation) == ("bot", "handed_back")
    job = _job(conversation)
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    assert AuditEntry.objects.filter(action="conversation.hand_back").count() == 1


def test_hand_back_closes_the_bots_replies_to_what_the_guest_wrote_while_staff_held_them(
    conversation, fake_green, fake_deepseek, staff_user
):
    """A message written during the hold whose job is still in its burst window when staff hand
    back: staff held it, so the bot never answers it; the guest's next message is the bot's."""
    handoff.conversation_take(conversation_id=conversation.pk, actor=staff_user, via="api")
    held = _job(conversation)  # not yet claimed (the burst window)
    handoff.conversation_hand_back(conversation_id=conversation.pk, actor=staff_user, via="api")
    held.refresh_from_db()
    assert held.status == ReplyJob.Status.SUPERSEDED
    assert replies.reply_job_process(job_id=held.pk).result == "skipped"
    after = _job(conversation)
    assert replies.reply_job_process(job_id=after.pk).result == "done"
    assert len(_sends(fake_green)) == 1


def test_staff_of_another_hotel_cannot_take_the_conversation(conversation):
    other_hotel = HotelFactory.create(green_api_instance_id="1101000999", name="Other")
    user = get_user_model().objects.create_user("otto", "otto@example.com", "pw")
    other_hotel.staff.add(user)
    with pytest.raises(NotFound):
        handoff.conversation_take(conversation_id=conversation.pk, actor=user, via="admin")
    assert _owner(conversation) == ("bot", "")


# --- staff replies -----------------------------------------------------------------------------------
def test_staff_reply_is_sent_exactly_once_with_a_double_submit_and_an_unknown_outcome(
    conversation, fake_green, staff_user, settings
):
    waiting = _job(conversation, "I want to talk to a person")
    assert replies.reply_job_process(job_id=waiting.pk).result == "done"  # the notice
    first = handoff.staff_reply_queue(
        conversation_id=conversation.pk,
        text="Hi, Frida here.",
        actor=staff_user,
        via="admin",
        request_key="k1",
    )
    again = handoff.staff_reply_queue(
        conversation_id=conversation.pk,
        text="Hi, Frida here.",
        actor=staff_user,
        via="admin",
        request_key="k1",
    )
    assert again.pk == first.pk
    assert ReplyJob.objects.filter(kind="staff").count() == 1
    assert (first.kind, first.inbound_id, first.reply_text) == (
        "staff",
        waiting.inbound_id,
        "Hi, Frida here.",
    )
    assert _owner(conversation) == ("staff", "staff_took")
    # The send is reset after it left: its outcome is unknown; the next attempt reconciles.
    fake_green.add_fault({"match": {"method_name": "sendMessage"}, "mode": "reset", "count": 1})
    assert replies.reply_job_process(job_id=first.pk).result == "retry"
    ReplyJob.objects.filter(pk=first.pk).update(
        send_started_at=timezone.now() - timedelta(seconds=settings.REPLY_RECONCILE_GRACE + 1),
        next_attempt_at=timezone.now(),
    )
    assert replies.reply_job_process(job_id=first.pk).result == "done"
    assert len([m for m in fake_green.sent_messages() if m["textMessage"] == "Hi, Frida here."]) == 1
    assert AuditEntry.objects.filter(action="conversation.staff_reply").count() == 1


def test_staff_reply_waits_for_an_earlier_reply_to_the_guest(conversation, fake_green, staff_user):
    """Per-guest order holds for staff messages: a bot reply whose send started goes first."""
    earlier = _job(conversation)
    ReplyJob.objects.filter(pk=earlier.pk).update(
        status="pending", next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    ReplyJob.objects.filter(pk=earlier.pk).update(send_started_at=timezone.now())  # not superseded
    staff = handoff.staff_reply_queue(
        conversation_id=conversation.pk, text="Hello", actor=staff_user, via="admin"
    )
    assert replies.reply_job_process(job_id=staff.pk).result == "waiting"
    assert _sends(fake_green) == []


def test_statistics_count_neither_superseded_nor_staff_jobs(
    conversation, fake_green, fake_deepseek, staff_user
):
    bot = _job(conversation)
    assert replies.reply_job_process(job_id=bot.pk).result == "done"
    pending = _job(conversation)
    staff = handoff.staff_reply_queue(
        conversation_id=conversation.pk, text="Hi", actor=staff_user, via="admin"
    )
    assert replies.reply_job_process(job_id=staff.pk).result == "done"
    pending.refresh_from_db()
    assert pending.status == ReplyJob.Status.SUPERSEDED
    now = timezone.now()
    stats = reply_stats(since=now - timedelta(hours=1), until=now + timedelta(minutes=1), tenants=None)
    assert stats.by_result["done"] == 1
    assert "superseded" not in stats.by_result
    assert stats.latency.count == 1
    late_staff = handoff.staff_reply_queue(
        conversation_id=conversation.pk, text="Hi", actor=staff_user, via="admin"
    )
    ReplyJob.objects.filter(pk=late_staff.pk).update(next_attempt_at=now - timedelta(hours=1))
    assert reply_jobs_overdue(older_than=60)[0] == 0


# --- staff on the hotel's phone ----------------------------------------------------------------------
def test_staff_writing_from_the_phone_holds_the_conversation_then_the_bot_answers_again(
    webhook_client, fake_green, fake_deepseek
):
    hotel = HotelFactory.create()
    resp = webhook_client.post(URL, payloads.incoming_text(id_message="IN-1"), format="json")
    assert resp.json() == {"status": "stored"}
    pending = ReplyJob.objects.get()
    phone = payloads.outgoing_phone_message(id_message="PHONE-1", text="Hi Ana, this is reception.")
    assert webhook_client.post(URL, phone, format="json").json() == {"status": "staff_phone_stored"}
    conversation = pending.inbound.conversation
    conversation.refresh_from_db()
    assert (conversation.owner, conversation.owner_reason) == ("staff", "staff_phone")
    assert conversation.owner_until is not None
    assert abs(
        (conversation.owner_until - timezone.now()) - timedelta(minutes=hotel.staff_hold_minutes)
    ) < timedelta(minutes=1)
    pending.refresh_from_db()
    assert pending.status == ReplyJob.Status.SUPERSEDED
    stored = Message.objects.get(provider_message_id="PHONE-1")
    assert (stored.direction, stored.status, stored.conversation_id) == ("out", "sent", conversation.pk)
    # A redelivery is a no-op.
    assert webhook_client.post(URL, phone, format="json").json() == {"status": "duplicate"}
    assert Message.objects.filter(provider_message_id="PHONE-1").count() == 1
    # While the hold lasts the guest's next message gets no bot answer.
    webhook_client.post(URL, payloads.incoming_text(id_message="IN-2"), format="json")
    held = ReplyJob.objects.get(inbound__provider_message_id="IN-2")
    assert replies.reply_job_process(job_id=held.pk).result == "superseded"
    # After the hold the bot answers again.
    Conversation.objects.filter(pk=conversation.pk).update(owner_until=timezone.now() - timedelta(seconds=1))
    webhook_client.post(URL, payloads.incoming_text(id_message="IN-3"), format="json")
    later = ReplyJob.objects.get(inbound__provider_message_id="IN-3")
    assert replies.reply_job_process(job_id=later.pk).result == "done"
    later.refresh_from_db()
    assert [s["body"]["message"] for s in _sends(fake_green)] == [later.reply_text]


def test_phone_message_in_a_group_chat_is_ignored(webhook_client, hotel):
    phone = payloads.outgoing_phone_message(
        id_message="PHONE-G", text="Hi all", chat_id="120363043968066561@g.us"
    )
    assert webhook_client.post(URL, phone, format="json").json() == {"status": "ignored_group_chat"}
    assert not Message.objects.exists()


def test_phone_message_keeps_a_console_takeover_without_end(webhook_client, conversation, staff_user):
    handoff.conversation_take(conversation_id=conversation.pk, actor=staff_user, via="admin")
    phone = payloads.outgoing_phone_message(id_message="PHONE-2", text="Hello again")
    webhook_client.post(URL, phone, format="json")
    conversation.refresh_from_db()
    assert (conversation.owner, conversation.owner_reason, conversation.owner_until) == (
        "staff",
        "staff_took",
        None,
    )


# --- a takeover racing the send fence, on two PostgreSQL connections ---------------------------------
def _in_thread(target, results: dict, name: str):
    import threading

    from django.db import connection

    def run() -> None:
        try:
            results[name] = target()
        except BaseException as e:
            results[name] = e
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


def _a_backend_waits_on_a_lock(timeout: float = 10.0) -> bool:
    import time

    from django.db import connection

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                return True
        time.sleep(0.02)
    return False


@pytest.fixture
def race(transactional_db, fake_green, fake_deepseek) -> tuple[Conversation, ReplyJob, object]:
    """A guest's question and a staff user, committed (each party has its own connection)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("two sessions racing on row locks: PostgreSQL")
    conversation = ConversationFactory.create(guest__hotel=HotelFactory.create(), guest__chat_id=CHAT)
    user = get_user_model().objects.create_superuser("frida", "frida@example.com", "pw")
    return conversation, _job(conversation), user


def _take_in_thread(conversation: Conversation, user, results: dict):
    return _in_thread(
        lambda: handoff.conversation_take(conversation_id=conversation.pk, actor=user, via="admin"),
        results,
        "taker",
    )


def test_takeover_committed_while_the_fence_waits_means_never_sent(race, fake_green, monkeypatch):
    import threading

    conversation, job, user = race
    at_fence, go_fence, taking, commit = (threading.Event() for _ in range(4))
    real_order, real_audit = replies._earlier_reply_unsent, handoff.audit_record

    def pause_before_fence(j):
        at_fence.set()
        assert go_fence.wait(10)
        return real_order(j)

    def pause_before_commit(**kw):
        taking.set()  # the conversation and the job rows are locked and changed, not committed
        assert commit.wait(10)
        return real_audit(**kw)

    monkeypatch.setattr(replies, "_earlier_reply_unsent", pause_before_fence)
    monkeypatch.setattr(handoff, "audit_record", pause_before_commit)
    results: dict = {}
    worker = _in_thread(lambda: replies.reply_job_process(job_id=job.pk), results, "worker")
    assert at_fence.wait(10)  # the answer is generated; the next write is the fence
    taker = _take_in_thread(conversation, user, results)
    assert taking.wait(10)
    go_fence.set()
    assert _a_backend_waits_on_a_lock()  # the fence's UPDATE waits for the takeover's row lock
    commit.set()
    worker.join(10)
    taker.join(10)
    assert results["worker"].result == "lease_lost"
    job.refresh_from_db()
    assert job.status == ReplyJob.Status.SUPERSEDED
    assert fake_green.sent_messages() == []


def test_takeover_after_the_fence_leaves_the_send_which_goes_out_once(race, fake_green, monkeypatch):
    from messaging.clients import green_api

    conversation, job, user = race
    real_send = green_api.GreenApiClient.send_message
    results: dict = {}

    def take_then_send(self, **kw):
        # The fence committed send_started_at; a takeover on another connection comes now.
        _take_in_thread(conversation, user, results).join(10)
        return real_send(self, **kw)

    monkeypatch.setattr(green_api.GreenApiClient, "send_message", take_then_send)
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    assert isinstance(results["taker"], Conversation)
    assert AuditEntry.objects.get(action="conversation.take").details["superseded_jobs"] == []
    job.refresh_from_db()
    assert job.status == ReplyJob.Status.DONE
    assert len(fake_green.sent_messages()) == 1
