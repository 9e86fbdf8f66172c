"""The reply pipeline with the breakers: AI breaker open → canned answer; Green API breaker open →
the reply waits (pending_provider_recovery) and is drained once the breaker admits calls."""

from __future__ import annotations

import itertools

import pytest
from django.utils import timezone

from messaging.models import ReplyJob
from messaging.services import replies
from reliability import services
from reliability.breaker import State, registry
from reliability.models import BreakerConfig
from tests.factories import ConversationFactory, HotelFactory, MessageFactory, ReplyJobFactory

pytestmark = pytest.mark.django_db


def _job(chat: str = "79001234568@c.us", text: str = "What time is check-out?") -> ReplyJob:
    conversation = ConversationFactory.create(guest__hotel=HotelFactory.create(), guest__chat_id=chat)
    return ReplyJobFactory.create(inbound=MessageFactory.create(conversation=conversation, text=text))


def test_ai_breaker_open_answers_from_faq_without_calling_the_ai(fake_green, fake_deepseek):
    services.breaker_set_mode(name="deepseek", mode=BreakerConfig.Mode.FORCED_OPEN, reason="drill")
    job = _job()
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    job.refresh_from_db()
    assert job.degraded
    assert "circuit open" in job.degraded_reason
    assert "11:00" in job.reply_text
    assert fake_deepseek.journal(path_regex="chat/completions") == []
    assert len(fake_green.sent_messages()) == 1


def test_ai_transient_error_is_retried_once_within_the_deadline(fake_green, fake_deepseek):
    fake_deepseek.add_fault({"match": {"path_regex": "chat/completions"}, "mode": "overloaded", "count": 1})
    job = _job()
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    job.refresh_from_db()
    assert not job.degraded  # the in-call retry got the AI answer
    assert len(fake_deepseek.journal(path_regex="chat/completions")) == 2


def test_green_api_breaker_open_parks_the_reply_without_sending(fake_green, fake_deepseek, published):
    services.breaker_set_mode(name="green_api", mode=BreakerConfig.Mode.FORCED_OPEN, reason="drill")
    job = _job()
    outcome = replies.reply_job_process(job_id=job.pk)
    assert outcome.result == "pending_provider_recovery"
    job.refresh_from_db()
    assert job.status == ReplyJob.Status.PENDING_PROVIDER_RECOVERY
    assert job.attempts == 0  # a rejected call is not an attempt
    assert job.send_started_at is None
    assert job.reply_text  # generated once, kept for the send
    assert fake_green.journal("sendMessage") == []
    assert replies.reply_jobs_drain() == 0  # still forced open
    assert published == []


def test_drain_releases_parked_replies_at_the_send_rate_once_closed(
    fake_green, fake_deepseek, published, settings, monkeypatch
):
    settings.GREEN_API_SEND_RATE = 10.0
    services.breaker_set_mode(name="green_api", mode=BreakerConfig.Mode.FORCED_OPEN, reason="drill")
    jobs = [_job(chat=f"7900123456{i}@c.us") for i in range(3)]
    for job in jobs:
        assert replies.reply_job_process(job_id=job.pk).result == "pending_provider_recovery"
    services.breaker_set_mode(name="green_api", mode=BreakerConfig.Mode.AUTO)
    # Releasing each job takes 30 ms (a stepped clock): job i is still due i/rate after the drain
    # started, so that time is taken off its countdown instead of adding to every gap.
    ticks = itertools.count()
    monkeypatch.setattr(replies, "_drain_clock", lambda: 100.0 + 0.03 * next(ticks))
    before = timezone.now()
    assert replies.reply_jobs_drain() == 3
    assert [job_id for job_id, _ in published] == [j.pk for j in jobs]
    assert [countdown for _, countdown in published] == pytest.approx([0.0, 0.1 - 0.06, 0.2 - 0.09])
    due = [ReplyJob.objects.get(pk=j.pk).next_attempt_at for j in jobs]
    assert due[0] >= before
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(due)] == pytest.approx([0.1, 0.1])
    for job in jobs:
        ReplyJob.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
        assert replies.reply_job_process(job_id=job.pk).result == "done"
    assert len(fake_green.sent_messages()) == 3  # each exactly once


def test_drain_keeps_each_guests_order_and_takes_guests_in_turn(fake_green, fake_deepseek, published):
    """Released in the order the guests wrote (job ids), not the order the jobs parked in, one
    reply per guest in turn: a guest's replies leave in order, as far apart as the others allow."""
    services.breaker_set_mode(name="green_api", mode=BreakerConfig.Mode.FORCED_OPEN, reason="drill")
    ana = ConversationFactory.create(guest__hotel=HotelFactory.create(), guest__chat_id="79001110001@c.us")
    ben = ConversationFactory.create(guest__hotel=ana.hotel, guest__chat_id="79001110002@c.us")
    a1, a2, b1, a3 = (
        ReplyJobFactory.create(inbound=MessageFactory.create(conversation=c)) for c in (ana, ana, ben, ana)
    )
    # Ben's parks first (concurrent workers); a guest's own replies park oldest first, since a
    # later one waits for the earlier (test_replies: the order of a guest's replies).
    for job in (b1, a1, a2, a3):
        assert replies.reply_job_process(job_id=job.pk).result == "pending_provider_recovery"
    services.breaker_set_mode(name="green_api", mode=BreakerConfig.Mode.AUTO)
    assert replies.reply_jobs_drain() == 4
    assert [job_id for job_id, _ in published] == [a1.pk, b1.pk, a2.pk, a3.pk]


def test_repeated_send_failures_open_the_breaker_and_later_replies_wait(fake_green, fake_deepseek, published):
    fake_green.add_fault({"match": {"method_name": "sendMessage"}, "mode": "overloaded"})
    for i in range(5):  # green_api trips after 5 consecutive failures
        assert replies.reply_job_process(job_id=_job(chat=f"7900999000{i}@c.us").pk).result == "retry"
    assert registry.breaker("green_api").state == State.OPEN
    sends_before = len(fake_green.journal("sendMessage"))
    outcome = replies.reply_job_process(job_id=_job(chat="79009990099@c.us").pk)
    assert outcome.result == "pending_provider_recovery"
    assert len(fake_green.journal("sendMessage")) == sends_before
    registry.write_pending_events()
    from reliability.models import BreakerEvent

    assert BreakerEvent.objects.filter(breaker="green_api", to_state="open").count() == 1


def test_half_open_drain_releases_a_single_probe(fake_green, fake_deepseek, published):
    row = BreakerConfig.objects.get(name="green_api")
    row.recovery_timeout = 0.05
    row.save()
    fake_green.add_fault({"match": {"method_name": "sendMessage"}, "mode": "overloaded", "count": 5})
    for i in range(5):
        replies.reply_job_process(job_id=_job(chat=f"7900888000{i}@c.us").pk)
    assert registry.breaker("green_api").state == State.OPEN
    parked = [_job(chat=f"7900777000{i}@c.us") for i in range(3)]
    for job in parked:
        ReplyJob.objects.filter(pk=job.pk).update(
            status=ReplyJob.Status.PENDING_PROVIDER_RECOVERY, reply_text="Hello"
        )
    import time

    time.sleep(0.1)  # the open period (50 ms) is over: the next call is the probe
    published.clear()
    assert replies.reply_jobs_drain() == 1
    assert published[0][0] == parked[0].pk


def test_parked_replies_are_released_within_one_drain_interval_after_a_timed_force_open_ends(
    fake_green, fake_deepseek, published
):
    import time
    from datetime import timedelta

    until = timezone.now() + timedelta(seconds=1.0)  # long enough to park both jobs on a busy machine
    services.breaker_set_mode(
        name="green_api", mode=BreakerConfig.Mode.FORCED_OPEN, reason="drill", until=until
    )
    jobs = [_job(chat=f"7900555000{i}@c.us") for i in range(2)]
    for job in jobs:
        assert replies.reply_job_process(job_id=job.pk).result == "pending_provider_recovery"
    assert replies.reply_jobs_drain() == 0  # still forced open
    time.sleep(max(0.0, (until - timezone.now()).total_seconds()) + 0.1)  # the force-open is over;
    # no send has touched the breaker since
    assert replies.reply_jobs_drain() == 1  # the probe, at the first drain after the end
    probe = published[0][0]
    assert probe in {job.pk for job in jobs}
    ReplyJob.objects.filter(pk=probe).update(next_attempt_at=timezone.now())
    assert replies.reply_job_process(job_id=probe).result == "done"
    assert len(fake_green.sent_messages()) == 1


def test_beat_publishes_the_drain_only_while_a_reply_is_parked(django_assert_num_queries):
    # The idle check the messaging app registers for the drain's beat entry (reliability.scheduler)
    from reliability import scheduler

    drain = "messaging.tasks.drain_provider_recovery"
    with django_assert_num_queries(1):  # an idle beat tick: one indexed EXISTS, no task published
        assert scheduler.has_work(drain) is False
    job = _job()
    assert scheduler.has_work(drain) is False  # pending, not parked: the worker's, not the drain's
    ReplyJob.objects.filter(pk=job.pk).update(status=ReplyJob.Status.PENDING_PROVIDER_RECOVERY)
    assert scheduler.has_work(drain) is True  # found at the next due run: within REPLY_DRAIN_INTERVAL
