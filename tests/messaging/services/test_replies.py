"""The reply pipeline against the fake providers: generate once, send exactly once, retry, bury."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from messaging.models import Message, ReplyJob
from messaging.services import replies
from messaging.tasks import process_reply_job
from tests.factories import ConversationFactory, HotelFactory, MessageFactory, ReplyJobFactory
from tests.messaging.payloads import CHAT

pytestmark = pytest.mark.django_db


def _sends(fake_green) -> list[dict]:
    return fake_green.journal("sendMessage")


def _make_due(job: ReplyJob) -> None:
    ReplyJob.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())


def test_happy_path_generates_with_ai_and_sends_once(job, fake_green, fake_deepseek):
    outcome = replies.reply_job_process(job_id=job.pk)
    assert outcome.result == "done"
    job.refresh_from_db()
    assert job.status == ReplyJob.Status.DONE
    assert not job.degraded
    assert "11:00" in job.reply_text
    outbound = job.outbound
    assert outbound is not None
    assert outbound.status == Message.Status.ACCEPTED
    assert outbound.provider_message_id == fake_green.sent_messages()[0]["idMessage"]
    [send] = _sends(fake_green)
    assert send["body"] == {"chatId": CHAT, "message": job.reply_text, "linkPreview": False}
    [chat] = fake_deepseek.journal(path_regex="chat/completions")
    assert chat["body"]["model"] == "deepseek-flash"
    assert chat["body"]["thinking"] == {"type": "disabled"}
    assert "- Check-out: until 11:00" in chat["body"]["messages"][0]["content"]
    assert chat["body"]["messages"][-1] == {"role": "user", "content": "What time is check-out?"}


#: Transaction control, not work: BEGIN/COMMIT (or, inside the test's transaction, savepoints).
_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def test_one_answered_message_costs_at_most_thirteen_statements_in_two_transactions(
    job, fake_green, django_capture_on_commit_callbacks
):
    """docs/cost.md: a reply job's statements are its cost; this pins them so none grows back
    unnoticed. The happy path: the claim (an UPDATE, then the job and its relations), the burst
    and the history, the guest's new language, the outbound row with the reply text (one
    transaction), the earlier-reply check, the send fence, the attempts (generate and send in
    one INSERT), the confirm (outbound id, status and the deferred statuses' look in one statement,
    then done: one transaction)
    and the deferred statuses' look after its commit."""
    # A first reply (another guest's) warms the process's caches (breaker configs, degradation).
    conversation = ConversationFactory.create(
        guest__hotel=job.inbound.conversation.hotel, guest__chat_id="79001110001@c.us"
    )
    first = ReplyJobFactory.create(inbound=MessageFactory.create(conversation=conversation, text="Wifi?"))
    assert replies.reply_job_process(job_id=first.pk).result == "done"
    with (
        CaptureQueriesContext(connection) as queries,
        django_capture_on_commit_callbacks(execute=True),  # the confirm's look after its commit
    ):
        assert replies.reply_job_process(job_id=job.pk).result == "done"
    sql = [q["sql"].lstrip().upper() for q in queries.captured_queries]
    # The pipeline's own statements (the embedded default also paces sends in a database row).
    work = [s for s in sql if not s.startswith(_TRANSACTION_CONTROL) and '"MESSAGING_' in s]
    transactions = [s for s in sql if s.startswith(("BEGIN", "SAVEPOINT"))]
    assert len(work) <= 13, "\n".join(work)
    assert len(transactions) <= 2, "\n".join(sql)
    assert len(fake_green.sent_messages()) == 2


def test_prompt_carries_earlier_turns_of_the_conversation(job, fake_deepseek):
    conversation = job.inbound.conversation
    earlier = MessageFactory.create(conversation=conversation, text="Hi")
    Message.objects.filter(pk=earlier.pk).update(id=job.inbound.pk - 1000)  # older than the question
    replies.reply_job_process(job_id=job.pk)
    messages = fake_deepseek.journal(path_regex="chat/completions")[0]["body"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "user"]
    assert messages[1]["content"] == "Hi"


def test_running_twice_sends_once(job, fake_green):
    assert process_reply_job(job.pk) == "done"
    assert process_reply_job(job.pk) == "skipped"
    assert len(_sends(fake_green)) == 1


def test_ai_error_degrades_to_canned_answer_and_still_sends(job, fake_green, fake_deepseek):
    fake_deepseek.add_fault({"mode": "overloaded"})
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    job.refresh_from_db()
    assert job.degraded
    assert "503" in job.degraded_reason
    assert job.reply_text.startswith("Check-out at Seaside Inn is until 11:00.")
    assert len(_sends(fake_green)) == 1


def test_ai_keepalive_trickle_is_cut_by_the_deadline(job, fake_green, fake_deepseek, settings):
    settings.DEEPSEEK_DEADLINE = 1.0
    fake_deepseek.add_fault({"mode": "keepalive", "keepalive_s": 30})
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    job.refresh_from_db()
    assert job.degraded
    assert "deadline" in job.degraded_reason
    assert len(_sends(fake_green)) == 1


def test_transient_send_error_schedules_a_retry_then_succeeds(job, fake_green):
    fake_green.add_fault({"match": {"method_name": "sendMessage"}, "mode": "overloaded", "count": 1})
    outcome = replies.reply_job_process(job_id=job.pk)
    assert outcome.result == "retry"
    job.refresh_from_db()
    assert job.status == ReplyJob.Status.PENDING
    assert job.next_attempt_at > timezone.now()
    assert job.send_started_at is None  # a 503 means it was not sent
    assert "503" in job.last_error
    assert replies.reply_job_process(job_id=job.pk).result == "skipped"  # not due yet
    _make_due(job)
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    assert len(fake_green.sent_messages()) == 1
    assert len(_sends(fake_green)) == 2


def test_rate_limit_honours_retry_after(job, fake_green):
    fake_green.add_fault(
        {"match": {"method_name": "sendMessage"}, "mode": "rate_limit", "retry_after": 40, "count": 1}
    )
    before = timezone.now()
    assert replies.reply_job_process(job_id=job.pk).result == "retry"
    job.refresh_from_db()
    assert job.next_attempt_at >= before + timedelta(seconds=40)


def test_permanent_send_error_buries_the_job(job, fake_green):
    fake_green.add_fault(
        {"match": {"method_name": "sendMessage"}, "mode": "error", "status": 400, "count": 1}
    )
    assert replies.reply_job_process(job_id=job.pk).result == "dead"
    job.refresh_from_db()
    assert job.status == ReplyJob.Status.DEAD
    assert "400" in job.last_error
    assert job.outbound is not None
    assert job.outbound.status == Message.Status.FAILED


def test_retries_exhausted_buries_with_reason(job, fake_green, settings):
    settings.REPLY_MAX_ATTEMPTS = 2
    fake_green.add_fault({"match": {"method_name": "sendMessage"}, "mode": "overloaded"})
    assert replies.reply_job_process(job_id=job.pk).result == "retry"
    _make_due(job)
    assert replies.reply_job_process(job_id=job.pk).result == "dead"
    job.refresh_from_db()
    assert job.last_error.startswith("gave up after 2 attempts")


def test_lost_response_is_reconciled_from_the_journal_not_resent(job, fake_green):
    # The send happens at Green API but the connection is reset before the answer comes back.
    fake_green.add_fault(
        {"match": {"method_name": "sendMessage"}, "mode": "reset", "after_process": True, "count": 1}
    )
    assert replies.reply_job_process(job_id=job.pk).result == "retry"
    job.refresh_from_db()
    assert job.send_started_at is not None
    _make_due(job)
    outcome = replies.reply_job_process(job_id=job.pk)
    assert outcome.result == "done"
    [sent] = fake_green.sent_messages()
    assert outcome.detail == sent["idMessage"]
    assert len(_sends(fake_green)) == 1  # reconciled, never sent twice


def test_statuses_that_arrived_while_the_send_was_in_doubt_are_applied_on_reconcile(job, fake_green):
    from messaging.notifications import OutgoingStatus
    from messaging.services import statuses

    fake_green.add_fault(
        {"match": {"method_name": "sendMessage"}, "mode": "reset", "after_process": True, "count": 1}
    )
    assert replies.reply_job_process(job_id=job.pk).result == "retry"
    [sent] = fake_green.sent_messages()
    early = OutgoingStatus("1101000001", sent["idMessage"], "delivered", "", timezone.now())
    assert statuses.outbound_status_apply(hotel_id=job.inbound.hotel_id, status=early) == (
        "status_deferred",
        None,
    )
    _make_due(job)
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    job.refresh_from_db()
    assert job.outbound is not None
    assert job.outbound.status == Message.Status.DELIVERED


def test_unknown_outcome_not_in_journal_is_resent_after_the_grace(job, fake_green, settings):
    settings.GREEN_API_READ_TIMEOUT = 0.5
    settings.REPLY_RECONCILE_GRACE = 60
    from messaging.clients import green_api

    green_api.default_session.cache_clear()  # pick up the short read timeout
    fake_green.add_fault({"match": {"method_name": "sendMessage"}, "mode": "hang", "count": 1})
    try:
        assert replies.reply_job_process(job_id=job.pk).result == "retry"
        _make_due(job)
        outcome = replies.reply_job_process(job_id=job.pk)  # not in journal, grace not over: wait
        assert outcome.result == "retry"
        assert "waiting for Green API's journal" in outcome.detail
        assert fake_green.sent_messages() == []
        ReplyJob.objects.filter(pk=job.pk).update(
            send_started_at=timezone.now() - timedelta(seconds=61), next_attempt_at=timezone.now()
        )
        assert replies.reply_job_process(job_id=job.pk).result == "done"
        assert len(fake_green.sent_messages()) == 1
    finally:
        green_api.default_session.cache_clear()


def test_abandoned_job_is_claimable_after_its_lease(job, fake_green):
    ReplyJob.objects.filter(pk=job.pk).update(
        status=ReplyJob.Status.IN_PROGRESS, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert replies.reply_job_process(job_id=job.pk).result == "done"


def test_requeue_revives_a_dead_job(job, fake_green):
    fake_green.add_fault(
        {"match": {"method_name": "sendMessage"}, "mode": "error", "status": 400, "count": 1}
    )
    assert replies.reply_job_process(job_id=job.pk).result == "dead"
    assert replies.reply_jobs_requeue(job_ids=[job.pk]) == 1
    job.refresh_from_db()
    assert (job.status, job.attempts) == (ReplyJob.Status.PENDING, 0)
    assert job.outbound is not None
    assert job.outbound.status == Message.Status.PENDING
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    assert len(fake_green.sent_messages()) == 1


def test_non_text_message_hands_the_guest_to_staff_without_ai(fake_green, fake_deepseek):
    conversation = ConversationFactory.create(guest__hotel=HotelFactory.create(), guest__chat_id=CHAT)
    inbound = MessageFactory.create(conversation=conversation, text="", message_type="imageMessage")
    job = ReplyJobFactory.create(inbound=inbound)
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    job.refresh_from_db()
    conversation.refresh_from_db()
    assert job.kind == ReplyJob.Kind.HANDOFF
    assert "A member of our staff will answer you here." in job.reply_text
    assert not job.degraded  # the designed answer to media, not a degradation
    assert (conversation.owner, conversation.owner_reason) == ("waiting", "unreadable_message")
    assert fake_deepseek.journal(path_regex="chat/completions") == []


def test_a_guests_replies_go_out_in_the_order_they_wrote(job, fake_green):
    """A later question whose answer is ready first (another worker, a slower AI call, a retry
    backoff) waits for the earlier reply: not an attempt, nothing sent, then sent after it."""
    later = ReplyJobFactory.create(
        inbound=MessageFactory.create(conversation=job.inbound.conversation, text="Is there parking?")
    )
    waiting = replies.reply_job_process(job_id=later.pk)
    assert waiting.result == "waiting", waiting
    later.refresh_from_db()
    assert (later.status, later.attempts) == (ReplyJob.Status.PENDING, 0)
    assert later.reply_text  # the answer is kept: only the send waits
    assert later.next_attempt_at > timezone.now()
    assert _sends(fake_green) == []

    assert replies.reply_job_process(job_id=job.pk).result == "done"
    _make_due(later)
    assert replies.reply_job_process(job_id=later.pk).result == "done"
    job.refresh_from_db()
    later.refresh_from_db()
    assert [s["body"]["message"] for s in _sends(fake_green)] == [job.reply_text, later.reply_text]


def test_a_reply_behind_a_parked_one_is_parked_too_and_a_dead_one_holds_nobody(job, fake_green):
    later = ReplyJobFactory.create(inbound=MessageFactory.create(conversation=job.inbound.conversation))
    ReplyJob.objects.filter(pk=job.pk).update(status=ReplyJob.Status.PENDING_PROVIDER_RECOVERY)
    outcome = replies.reply_job_process(job_id=later.pk)
    assert outcome.result == replies.PENDING_PROVIDER_RECOVERY, outcome
    later.refresh_from_db()
    assert (later.status, later.attempts) == (ReplyJob.Status.PENDING_PROVIDER_RECOVERY, 0)

    ReplyJob.objects.filter(pk=job.pk).update(status=ReplyJob.Status.DEAD)
    ReplyJob.objects.filter(pk=later.pk).update(status=ReplyJob.Status.PENDING)
    _make_due(later)
    assert replies.reply_job_process(job_id=later.pk).result == "done"
    assert len(_sends(fake_green)) == 1


def test_a_reply_behind_one_in_a_retry_backoff_looks_again_after_its_turn(job, fake_green):
    """Not every half second for the whole backoff: just after the earlier reply's next attempt."""
    later = ReplyJobFactory.create(inbound=MessageFactory.create(conversation=job.inbound.conversation))
    ReplyJob.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now() + timedelta(seconds=10))
    before = timezone.now()
    assert replies.reply_job_process(job_id=later.pk).result == "waiting"
    later.refresh_from_db()
    wait = (later.next_attempt_at - before).total_seconds()
    assert 10 + replies.ORDER_WAIT - 1 <= wait <= 10 + replies.ORDER_WAIT + 1, wait
    assert _sends(fake_green) == []
