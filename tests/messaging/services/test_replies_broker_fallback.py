"""Replies without the broker: the database poll takes due jobs, and a job runs at most once when
the broker's tasks come back (the claim's row lock and lease token decide, not the broker)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from messaging.models import ReplyJob
from messaging.services import replies
from messaging.tasks import process_reply_job
from reliability import broker, broker_fallback, testing
from tests.factories import ConversationFactory, HotelFactory, MessageFactory, ReplyJobFactory

pytestmark = pytest.mark.django_db


def _job(chat: str, *, due_in: float = 0.0) -> ReplyJob:
    conversation = ConversationFactory.create(guest__hotel=HotelFactory.create(), guest__chat_id=chat)
    inbound = MessageFactory.create(conversation=conversation, text="What time is check-out?")
    job = ReplyJobFactory.create(inbound=inbound)
    ReplyJob.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now() + timedelta(seconds=due_in))
    return job


def test_poll_takes_due_jobs_from_the_database_and_leaves_the_rest(job, fake_green):
    later = _job("79001112233@c.us", due_in=3600)
    assert replies.reply_jobs_poll(limit=10) == 1
    job.refresh_from_db()
    later.refresh_from_db()
    assert job.status == ReplyJob.Status.DONE
    assert later.status == ReplyJob.Status.PENDING
    assert len(fake_green.journal("sendMessage")) == 1


def test_poll_is_bounded_by_its_limit(fake_green, fake_deepseek):
    jobs = [_job(f"7900111000{i}@c.us") for i in range(3)]
    assert replies.reply_jobs_poll(limit=2) == 2
    assert ReplyJob.objects.filter(pk__in=[j.pk for j in jobs], status=ReplyJob.Status.DONE).count() == 2


def test_broker_task_arriving_after_the_poll_sent_it_is_skipped(job, fake_green):
    # The broker comes back and delivers (or the sweeper re-publishes) the job's task: it is done.
    assert replies.reply_jobs_poll(limit=10) == 1
    assert process_reply_job(job.pk) == "skipped"
    assert len(fake_green.journal("sendMessage")) == 1


def test_job_held_by_a_broker_task_is_not_taken_by_the_poll(job, fake_green):
    claimed = replies._claim(job.pk, timezone.now())  # a task claimed it; its lease holds
    assert claimed is not None
    assert replies.reply_jobs_poll(limit=10) == 0
    assert fake_green.journal("sendMessage") == []


def test_poller_whose_lease_passed_to_a_task_stops_before_sending(job, fake_green, settings):
    polled = replies._claim(None, timezone.now())
    assert polled is not None
    assert polled.pk == job.pk
    # The poller stalls past its lease; the broker is back and a task claims the job anew.
    ReplyJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert process_reply_job(job.pk) == "done"
    assert replies._process_claimed(polled).result == "lease_lost"
    assert len(fake_green.journal("sendMessage")) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SKIP LOCKED is PostgreSQL's (SQLite: exclusive)"
)
def test_poll_skips_a_row_another_process_has_locked(fake_green, fake_deepseek):
    first, second = _job("79001110001@c.us"), _job("79001110002@c.us")
    locked, release = threading.Event(), threading.Event()

    def hold_first() -> None:  # another worker's claim, mid-transaction, on its own connection
        with transaction.atomic():
            list(ReplyJob.objects.select_for_update().filter(pk=first.pk))
            locked.set()
            release.wait(10)
        connections.close_all()

    holder = threading.Thread(target=hold_first)
    holder.start()
    try:
        assert locked.wait(10)
        taken = replies._claim(None, timezone.now())  # returns at once: no wait on the locked row
        assert taken is not None
        assert taken.pk == second.pk
    finally:
        release.set()
        holder.join(10)


def test_publish_is_skipped_while_this_process_polls_the_database(job, monkeypatch):
    monkeypatch.setattr(broker_fallback, "active", lambda: True)
    published_before = ReplyJob.objects.get(pk=job.pk).published_at
    assert replies.reply_job_publish(job_id=job.pk) is False
    assert ReplyJob.objects.get(pk=job.pk).published_at == published_before


def test_fallback_step_polls_while_down_and_recovers_once_when_up(job, fake_green, monkeypatch, settings):
    settings.CELERY_BEAT_SCHEDULE = {}  # the periodic part has its own test
    recovered: list[str] = []
    monkeypatch.setitem(broker_fallback._recovery_hooks, "test", lambda: recovered.append("warm"))
    answers = iter([False, True, True])

    def fake_probe() -> bool:
        up = next(answers)
        if up:
            broker.mark_up()
        else:
            broker.mark_down("test probe")
        return up

    monkeypatch.setattr(broker, "probe", fake_probe)
    try:
        assert broker_fallback.step() == settings.REPLY_DB_POLL_INTERVAL  # down: polled the database
        job.refresh_from_db()
        assert job.status == ReplyJob.Status.DONE
        assert broker_fallback.step() == settings.BROKER_PROBE_INTERVAL  # back: recovery hooks once
        assert broker_fallback.step() == settings.BROKER_PROBE_INTERVAL
        assert recovered == ["warm"]
    finally:
        testing.reset_broker_health()
