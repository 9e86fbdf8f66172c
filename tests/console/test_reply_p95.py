"""One reply latency, one percentile: the report, the dashboard, the API and the ``reply_p95_above``
degradation rule see the same p95 for the same replies (issue 17: they used to show three numbers).

Latency = the guest's message stored → Green API accepting our reply; p95 = nearest rank."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from console import dashboard, reports
from messaging import selectors
from messaging.models import Message, ReplyJob
from reliability import degradation
from reliability.models import DegradationRule
from tests.factories import HotelFactory, MessageFactory, ReplyJobFactory

pytestmark = pytest.mark.django_db

#: 1..19 s and one slow reply of 60 s: nearest rank p95 = the 19th = 19 s (linear interpolation
#: would say 21.05 s, int(0.95 n) would pick 60 s: the old definitions disagreed).
LATENCIES = [*range(1, 20), 60]
P95 = 19.0


@pytest.fixture
def replies() -> None:
    hotel = HotelFactory.create()
    accepted = timezone.now() - timedelta(seconds=30)  # inside the rule's 5 minutes and the last hour
    for seconds in LATENCIES:
        job = ReplyJobFactory.create(inbound__conversation__guest__hotel=hotel, status=ReplyJob.Status.DONE)
        outbound = MessageFactory.create(
            conversation=job.inbound.conversation,
            direction=Message.Direction.OUTBOUND,
            status=Message.Status.ACCEPTED,
            accepted_at=accepted,
        )
        Message.objects.filter(pk=job.inbound_id).update(created_at=accepted - timedelta(seconds=seconds))
        ReplyJob.objects.filter(pk=job.pk).update(outbound=outbound, completed_at=accepted)


def test_nearest_rank_percentile() -> None:
    assert selectors.percentile([], 95) is None
    assert selectors.percentile([float(v) for v in LATENCIES], 95) == P95
    assert selectors.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert selectors.percentile([5.0], 95) == 5.0


def test_report_dashboard_api_and_rule_show_one_p95(replies) -> None:
    now = timezone.now()
    root = User.objects.create_superuser("root")

    report = reports.reliability_report(since=now - timedelta(hours=1), until=now)
    board = dashboard.dashboard_data(user=root, now=now)
    api = APIClient()
    api.force_authenticate(root)
    response = api.get("/api/v1/reports/reliability/", {"hours": 1})
    assert response.status_code == 200, response.content

    assert report["replies"]["latency_seconds"] == {"p50": 10.0, "p95": P95, "count": len(LATENCIES)}
    assert (board.latency_p95, board.latency_count) == (P95, len(LATENCIES))
    assert response.json()["replies"]["latency_seconds"]["p95"] == P95
    assert selectors.reply_latency_p95() == P95  # the rule's signal (registered by messaging)

    # The rule acts on that very number: it holds just under it, not at it.
    DegradationRule.objects.all().delete()
    below = DegradationRule.objects.create(
        name="slow", condition="reply_p95_above", threshold=P95 - 0.001, level=3, switches_off=[]
    )
    assert degradation.rules_evaluate(rules=[below]).causes == ("slow",)
    below.threshold = P95
    assert degradation.rules_evaluate(rules=[below]).causes == ()
