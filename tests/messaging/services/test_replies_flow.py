"""Issue 6 items 8, 10, 11: one retry layer for journal reads, paced Green API calls, a sweeper
that re-publishes only lost tasks."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from messaging.clients import green_api
from messaging.models import ReplyJob
from messaging.services import replies
from messaging.tasks import process_reply_job
from reliability import ratelimit
from reliability.breaker import State, registry
from tests.factories import ConversationFactory, MessageFactory, ReplyJobFactory
from tests.messaging.payloads import CHAT

pytestmark = pytest.mark.django_db


def _make_due(job: ReplyJob) -> None:
    ReplyJob.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())


def _send_in_doubt(job: ReplyJob, fake_green) -> None:
    """A send whose connection was reset: the outcome is unknown, the next attempt reconciles."""
    fake_green.add_fault({"match": {"method_name": "sendMessage"}, "mode": "reset", "count": 1})
    assert replies.reply_job_process(job_id=job.pk).result == "retry"
    job.refresh_from_db()
    assert job.send_started_at is not None


# --- item 8: one retry layer for journal reads ----------------------------------------------------
def test_journal_read_is_called_once_per_job_attempt(job, fake_green, settings):
    settings.REPLY_MAX_ATTEMPTS = 10
    settings.GREEN_API_RATE_LAST_OUTGOING = 0  # unpaced here: this test counts retries, not pacing
    _send_in_doubt(job, fake_green)
    fake_green.add_fault({"match": {"method_name": "lastOutgoingMessages"}, "mode": "overloaded"})
    for _ in range(3):
        _make_due(job)
        outcome = replies.reply_job_process(job_id=job.pk)
        assert outcome.result == "retry"
        assert "reconcile" in outcome.detail
    # 3 job attempts, 3 journal reads: no in-call retries multiply them (9 before the fix).
    assert len(fake_green.journal("lastOutgoingMessages")) == 3
    assert fake_green.sent_messages() == []


# --- item 10: a journal 429 storm never opens the send breaker ------------------------------------
def test_journal_429_storm_does_not_open_the_send_breaker(job, fake_green, settings):
    settings.REPLY_MAX_ATTEMPTS = 50
    settings.GREEN_API_RATE_LAST_OUTGOING = 0
    _send_in_doubt(job, fake_green)
    fake_green.add_fault({"match": {"method_name": "lastOutgoingMessages"}, "mode": "rate_limit"})
    outcomes = []
    for _ in range(12):
        _make_due(job)
        ReplyJob.objects.filter(pk=job.pk).update(status=ReplyJob.Status.PENDING)
        outcomes.append(replies.reply_job_process(job_id=job.pk).result)
    assert len(fake_green.journal("lastOutgoingMessages")) >= 5  # enough 429s to open a breaker
    assert registry.breaker(green_api.DEPENDENCY).state == State.CLOSED
    assert registry.breaker(green_api.JOURNAL_DEPENDENCY).state == State.OPEN  # they counted there
    assert "pending_provider_recovery" in outcomes  # the open journal breaker parks the job (not an attempt)
    # Sends are unaffected: another guest's reply goes out at once.
    # (Another guest: this guest's next reply rightly waits behind the parked one.)
    other = ReplyJobFactory.create(
        inbound=MessageFactory.create(
            conversation=ConversationFactory.create(
                guest__hotel=job.inbound.conversation.hotel, guest__chat_id="79001110009@c.us"
            ),
            text="Is there parking?",
        )
    )
    assert replies.reply_job_process(job_id=other.pk).result == "done"


# --- item 10: paced calls never earn a 429 from the (rate-limiting) fake --------------------------
@pytest.fixture
def strict_green(settings, monkeypatch):
    """The fake with Green API's per-method rate limits on; the limiter on per-process slots (the
    shared stores are tested in tests/reliability/test_ratelimit.py)."""
    from fakes.green_api import FakeGreenApi

    monkeypatch.setattr(ratelimit, "_build", lambda: ratelimit.RateLimiter([ratelimit.MemorySlots()]))
    with FakeGreenApi(rate_limits=True) as fake:
        settings.GREEN_API_URL = fake.url
        yield fake


def _hammer(calls: int, threads: int, fn: Any) -> list[str]:
    results: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        for _ in range(calls):
            try:
                fn()
                outcome = "ok"
            except green_api.GreenApiRateLimited:
                outcome = "paced"
            except green_api.GreenApiError as e:
                outcome = f"error {e.status}"
            with lock:
                results.append(outcome)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    return results


def test_paced_journal_reads_never_earn_a_429(strict_green, settings):
    settings.GREEN_API_RATE_MAX_WAIT = 1.5
    client = green_api.client_for(id_instance=strict_green.id_instance, api_token=strict_green.api_token)
    results = _hammer(3, 4, lambda: client.last_outgoing_messages(minutes=5))
    assert set(results) <= {"ok", "paced"}, results
    assert results.count("ok") >= 2  # slots ~1.1 s apart within a 1.5 s wait bound
    assert "paced" in results  # 12 calls cannot all fit: refused at once, not held
    answered = strict_green.journal("lastOutgoingMessages")
    assert [e["status"] for e in answered] == [200] * len(answered)
    times = sorted(e["time"] for e in answered)
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times)), times


def test_paced_sends_never_earn_a_429(strict_green, settings):
    settings.GREEN_API_RATE_MAX_WAIT = 5.0
    client = green_api.client_for(id_instance=strict_green.id_instance, api_token=strict_green.api_token)
    started = time.monotonic()
    results = _hammer(15, 8, lambda: client.send_message(chat_id=CHAT, text="hello"))
    elapsed = time.monotonic() - started
    assert results == ["ok"] * 120, sorted(set(results))
    assert [e["status"] for e in strict_green.journal("sendMessage")] == [200] * 120
    assert elapsed >= 119 / settings.GREEN_API_RATE_SEND_MESSAGE * 0.95  # paced, not a burst


def test_pacing_refusal_parks_the_send_without_sending(job, fake_green, settings, monkeypatch):
    class Full:
        def acquire(self, key: str, *, rate: float, max_wait: float) -> ratelimit.Grant:
            return ratelimit.Grant(False, 7.0, "memory")

    monkeypatch.setattr(ratelimit, "limiter", lambda: Full())
    outcome = replies.reply_job_process(job_id=job.pk)
    assert outcome.result == "pending_provider_recovery"
    job.refresh_from_db()
    assert job.status == ReplyJob.Status.PENDING_PROVIDER_RECOVERY
    assert job.send_started_at is None  # surely not sent
    assert job.attempts == 0  # our own pacing is not an attempt
    assert fake_green.journal("sendMessage") == []


# --- item 11: the sweeper re-publishes only lost tasks --------------------------------------------
def _sweep_at(now: datetime) -> int:
    return replies.reply_jobs_sweep(now=now)


def test_sweeper_requeues_lost_and_abandoned_jobs(recording_broker, settings):
    now = timezone.now()
    stale = timedelta(seconds=settings.REPLY_STALE_AFTER + 1)
    lost = ReplyJobFactory.create(next_attempt_at=now - stale)  # never published (published_at empty)
    abandoned = ReplyJobFactory.create(
        status=ReplyJob.Status.IN_PROGRESS,
        lease_expires_at=now - timedelta(seconds=1),
        published_at=now - stale,
    )
    fresh = ReplyJobFactory.create(next_attempt_at=now)
    ReplyJobFactory.create(status=ReplyJob.Status.DONE, next_attempt_at=now - timedelta(hours=1))
    assert _sweep_at(now) == 2
    assert sorted(recording_broker.published) == sorted([lost.pk, abandoned.pk])
    assert fresh.pk not in recording_broker.published
    lost.refresh_from_db()
    assert (lost.republish_count, lost.published_task_id) in {(1, "task-1"), (1, "task-2")}
    assert lost.published_at is not None
    # A re-published job is not re-published again while its new task may still be queued.
    assert _sweep_at(now) == 0


def test_job_whose_task_is_still_queued_is_not_republished(recording_broker, settings):
    """A slow queue: jobs long overdue, but published recently: their tasks are still queued."""
    now = timezone.now()
    overdue = now - timedelta(seconds=settings.REPLY_STALE_AFTER * 10)
    queued = [
        ReplyJobFactory.create(next_attempt_at=overdue, published_at=now - timedelta(seconds=5))
        for _ in range(20)
    ]
    assert _sweep_at(now) == 0
    assert recording_broker.published == []
    # Once that publish is itself stale, each is re-published once.
    later = now + timedelta(seconds=settings.REPLY_STALE_AFTER)
    assert _sweep_at(later) == len(queued)
    assert _sweep_at(later + timedelta(seconds=settings.REPLY_SWEEP_INTERVAL)) == 0


def test_publish_is_recorded_and_a_lost_publish_is_republished_once(
    recording_broker, settings, django_capture_on_commit_callbacks
):
    job = ReplyJobFactory.create()
    recording_broker.down = True  # broker down at commit
    with django_capture_on_commit_callbacks(execute=True):
        replies.reply_job_enqueue_on_commit(job_id=job.pk)
    job.refresh_from_db()
    assert job.published_at is None
    recording_broker.down = False
    created = job.next_attempt_at
    stale = settings.REPLY_STALE_AFTER
    assert _sweep_at(created + timedelta(seconds=stale - 1)) == 0  # not stale yet
    assert _sweep_at(created + timedelta(seconds=stale + 1)) == 1
    assert recording_broker.published == [job.pk]
    # Sweeps every 15 s after that do not publish it again within the (doubled) spacing.
    for k in range(1, 4):
        assert _sweep_at(timezone.now() + timedelta(seconds=settings.REPLY_SWEEP_INTERVAL * k)) == 0
    # A regular publish (a retry, a requeue) resets the spacing.
    assert replies.reply_job_publish(job_id=job.pk)
    job.refresh_from_db()
    assert (job.republish_count, job.published_task_id) == (0, "task-2")


def test_request_path_publish_is_recorded_by_the_insert_and_cleared_when_it_fails(
    recording_broker, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """The webhook's job carries its publish (time and the task id Celery is given) from the INSERT:
    no UPDATE after a publish that succeeds; one that fails leaves the job "never published"."""
    task_ids: list[str | None] = []
    recording = process_reply_job.apply_async

    def spy(*args: Any, **kwargs: Any) -> Any:
        task_ids.append(kwargs.get("task_id"))
        return recording(*args, **kwargs)

    monkeypatch.setattr(process_reply_job, "apply_async", spy)
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        job = replies.reply_job_create(inbound=MessageFactory.create(), now=now)
    job.refresh_from_db()
    assert recording_broker.published == [job.pk]
    assert (job.published_at, job.republish_count) == (now, 0)
    assert task_ids == [job.published_task_id]
    assert job.published_task_id

    recording_broker.down = True
    with django_capture_on_commit_callbacks(execute=True):
        failed = replies.reply_job_create(inbound=MessageFactory.create(), now=now)
    failed.refresh_from_db()
    assert (failed.published_at, failed.published_task_id) == (None, "")
    assert _sweep_at(now + timedelta(seconds=1)) == 0
    recording_broker.down = False
    # Once stale, the sweeper re-publishes both (neither was taken by a worker here), as before.
    assert _sweep_at(now + timedelta(seconds=settings.REPLY_STALE_AFTER + 1)) == 2


def test_republish_spacing_grows_and_is_capped(recording_broker, settings):
    settings.REPLY_STALE_AFTER = 30
    settings.REPLY_REPUBLISH_MAX_SPACING = 300
    start = timezone.now()
    job = ReplyJobFactory.create(next_attempt_at=start - timedelta(hours=1), published_at=start)
    republished_at: list[float] = []
    for second in range(0, 1500, 5):  # the sweeper every 5 s for 25 minutes
        now = start + timedelta(seconds=second)
        if _sweep_at(now):
            republished_at.append(second)
            ReplyJob.objects.filter(pk=job.pk).update(published_at=now)  # the publish time of that sweep
    gaps = [b - a for a, b in zip([0.0, *republished_at], republished_at, strict=False)]
    assert gaps[:4] == [30, 60, 120, 240]
    assert set(gaps[4:]) == {300}
    assert len(recording_broker.published) == len(republished_at)
