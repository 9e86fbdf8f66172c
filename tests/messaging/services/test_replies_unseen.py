"""No publish waits for the sweeper for long (issue 16 item 11): a reply job no worker has claimed
REPLY_UNSEEN_AFTER after its publish is re-published once, by the beat process's watch every
REPLY_UNSEEN_CHECK_INTERVAL (``replies.reply_jobs_republish_unseen``): within 5 s of its creation
instead of the sweeper's 30-45 s. A backlog costs one extra task per job, never more: after that
the sweeper's backoff applies. Runs against the configured broker (Redis in the services run).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from messaging.models import ReplyJob
from messaging.services import replies
from reliability import broker as broker_module
from reliability import testing, watchers
from tests.factories import MessageFactory

pytestmark = pytest.mark.django_db


def _lost_publish(created: datetime) -> ReplyJob:
    """A webhook's job whose publish died with its web process: recorded by the INSERT, never sent."""
    job = replies.reply_job_unsaved(now=created)
    job.inbound = MessageFactory.create()
    job.save(force_insert=True)
    return job


def _check_at(now: datetime) -> int:
    return replies.reply_jobs_republish_unseen(now=now)


def test_a_lost_publish_is_republished_once_within_seconds_then_the_sweeper_backoff_applies(
    recording_broker, settings
):
    created = timezone.now()
    job = _lost_publish(created)
    unseen_after = settings.REPLY_UNSEEN_AFTER
    assert unseen_after + settings.REPLY_UNSEEN_CHECK_INTERVAL < 5  # the promise: within 5 s

    assert _check_at(created + timedelta(seconds=unseen_after - 0.5)) == 0  # a worker may yet take it
    assert _check_at(created + timedelta(seconds=unseen_after + 0.1)) == 1
    assert recording_broker.published == [job.pk]
    job.refresh_from_db()
    assert (job.republish_count, job.published_task_id) == (1, "task-1")
    # Once only: the checks that follow leave it to the sweeper ...
    for second in range(3, 40):
        assert _check_at(created + timedelta(seconds=second)) == 0
    republished = job.published_at
    assert republished is not None
    # ... whose backoff for a job re-published once is 2 x REPLY_STALE_AFTER from that publish.
    assert replies.reply_jobs_sweep(now=created + timedelta(seconds=settings.REPLY_STALE_AFTER + 15)) == 0
    later = republished + timedelta(seconds=2 * settings.REPLY_STALE_AFTER + 1)
    assert replies.reply_jobs_sweep(now=later) == 1
    assert recording_broker.published == [job.pk, job.pk]


def test_a_failed_publish_is_republished_early_too(
    recording_broker, settings, django_capture_on_commit_callbacks
):
    recording_broker.down = True  # the broker blinked at commit: the job is "never published"
    with django_capture_on_commit_callbacks(execute=True):
        job = replies.reply_job_create(inbound=MessageFactory.create(), now=timezone.now())
    job.refresh_from_db()
    assert job.published_at is None
    recording_broker.down = False
    assert _check_at(job.next_attempt_at + timedelta(seconds=settings.REPLY_UNSEEN_AFTER + 0.1)) == 1
    assert recording_broker.published == [job.pk]


def test_only_jobs_no_worker_has_seen_are_republished_early(recording_broker, settings):
    now = timezone.now()
    check_at = now + timedelta(seconds=settings.REPLY_UNSEEN_AFTER + 1)
    unseen = _lost_publish(now)
    claimed = _lost_publish(now)
    ReplyJob.objects.filter(pk=claimed.pk).update(attempts=1)  # a worker took it, and will retry
    running = _lost_publish(now)
    ReplyJob.objects.filter(pk=running.pk).update(
        status=ReplyJob.Status.IN_PROGRESS, attempts=1, lease_expires_at=now + timedelta(minutes=2)
    )
    done = _lost_publish(now)
    ReplyJob.objects.filter(pk=done.pk).update(status=ReplyJob.Status.DONE, attempts=1)
    retry_later = _lost_publish(now)
    ReplyJob.objects.filter(pk=retry_later.pk).update(next_attempt_at=now + timedelta(seconds=30))
    published_later = _lost_publish(now)  # a fresh regular publish (e.g. a requeue) a moment ago
    ReplyJob.objects.filter(pk=published_later.pk).update(published_at=check_at - timedelta(seconds=0.5))
    old = _lost_publish(
        now - timedelta(seconds=settings.REPLY_STALE_AFTER + settings.REPLY_SWEEP_INTERVAL + 1)
    )

    assert _check_at(check_at) == 1
    assert recording_broker.published == [unseen.pk]
    # The old one is the sweeper's (its rule for a job never re-published: REPLY_STALE_AFTER).
    assert replies.reply_jobs_sweep(now=check_at) == 1
    assert recording_broker.published == [unseen.pk, old.pk]


def test_a_slow_queue_costs_one_extra_task_per_job_never_more(recording_broker, settings):
    """A backlog is not a lost publish: 50 jobs waiting behind a slow worker each get one more task
    (which finds its job claimed or done and skips it), however many checks run meanwhile."""
    now = timezone.now()
    jobs = [_lost_publish(now) for _ in range(50)]
    for tick in range(2, 30, 2):  # the watch every 2 s for half a minute
        _check_at(now + timedelta(seconds=tick + 0.1))
    assert sorted(recording_broker.published) == sorted(job.pk for job in jobs)


def test_while_the_broker_is_down_one_job_per_check_is_tried(recording_broker, settings):
    now = timezone.now()
    for _ in range(5):
        _lost_publish(now)
    recording_broker.down = True
    broker_module.mark_down("test: broker unreachable")
    try:
        assert _check_at(now + timedelta(seconds=3)) == 0  # one attempt (a probe), failed
        recording_broker.down = False
        assert _check_at(now + timedelta(seconds=5)) == 1  # one attempt, it works: broker marked up
        assert not broker_module.is_down()
        assert _check_at(now + timedelta(seconds=7)) == 4  # the rest at once
    finally:
        testing.reset_broker_health()


def test_the_check_is_one_query_when_nothing_is_due(recording_broker, settings):
    _lost_publish(timezone.now())  # fresh: not due yet
    with CaptureQueriesContext(connection) as queries:
        assert _check_at(timezone.now()) == 0
    assert len(queries) == 1
    assert "next_attempt_at" in queries[0]["sql"]  # a range of the (status, next_attempt_at) index


def test_the_republish_reaches_the_real_broker(settings):
    """With the configured broker (Redis in the services run, the embedded folder otherwise)."""
    created = timezone.now() - timedelta(seconds=settings.REPLY_UNSEEN_AFTER + 0.5)
    job = _lost_publish(created)
    lost_task_id = job.published_task_id
    testing.reset_request_path_pool()
    try:
        assert replies.reply_jobs_republish_unseen() == 1
    finally:
        testing.reset_request_path_pool()
    job.refresh_from_db()
    assert job.republish_count == 1
    assert job.published_task_id not in ("", lost_task_id)
    url = django_settings.CELERY_BROKER_URL
    if url.startswith("redis://"):
        import redis

        client = redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)
        mine = [
            str(raw)
            for raw in client.lrange("celery", 0, -1)
            if json.loads(raw)["headers"]["id"] == job.published_task_id
        ]
        assert len(mine) == 1
        headers = json.loads(mine[0])["headers"]
        assert (headers["task"], headers["argsrepr"]) == ("messaging.tasks.process_reply_job", f"({job.pk},)")
        client.lrem("celery", 1, mine[0])  # no worker runs here: leave the queue as it was


# --- the watch thread of the beat process ---------------------------------------------------------
def test_the_reply_watch_is_registered_with_its_interval(settings):
    watch = watchers._watches["reply_jobs_unseen"]
    assert watch.run is replies.reply_jobs_republish_unseen
    settings.REPLY_UNSEEN_CHECK_INTERVAL = 1.5
    assert watch.interval() == 1.5
