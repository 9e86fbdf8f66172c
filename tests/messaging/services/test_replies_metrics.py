"""Issue 10: guest-level metrics recorded by the reply pipeline (asserted on deltas)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from messaging.models import Message, ReplyJob
from messaging.services import replies
from tests.reliability.test_metrics import Delta, value

pytestmark = pytest.mark.django_db


def test_reply_latency_is_observed_from_inbound_stored_to_send_accepted(job: ReplyJob):
    count = Delta("hotelbot_reply_latency_seconds_count")
    within_a_minute = Delta("hotelbot_reply_latency_seconds_bucket", {"le": "60.0"})
    total = Delta("hotelbot_reply_latency_seconds_sum")
    stored = job.inbound.created_at - timedelta(seconds=30)  # the guest wrote 30 s ago
    Message.objects.filter(pk=job.inbound.pk).update(created_at=stored)
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    assert count() == 1
    assert within_a_minute() == 1
    assert 30 <= total() < 90


def test_canned_answer_when_the_ai_fails_counts_as_a_fallback(job: ReplyJob, fake_deepseek):
    used = Delta("fallback_usage_total", {"dependency": "deepseek", "fallback": "canned_reply"})
    degraded = Delta("hotelbot_replies_total", {"result": "degraded"})
    fake_deepseek.add_fault({"mode": "overloaded"})
    assert replies.reply_job_process(job_id=job.pk).result == "done"
    assert (used(), degraded()) == (1, 1)


def test_the_sweeper_stamps_the_beat_heartbeat():
    before = time.time()
    replies.reply_jobs_sweep()
    assert value("hotelbot_beat_last_run_timestamp_seconds") >= before - 1
