"""The reliability report against rows the test creates: replies, latency, dead letters, breakers,
scoping to a staff user's hotel; the command, the hourly task, admin and the API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from console import reports, tasks, tenancy
from hotelbot.exceptions import ValidationFailed
from messaging.models import Hotel, Message, ReplyJob
from messaging.permissions import HOTEL_STAFF_GROUP
from reliability.models import BreakerEvent, DeadLetter, ReliabilityReport
from tests.factories import ConversationFactory, HotelFactory, MessageFactory, ReplyJobFactory

pytestmark = pytest.mark.django_db

UNTIL = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SINCE = UNTIL - timedelta(hours=2)


def _job(
    hotel: Hotel, status: str, *, latency: float | None = None, degraded: bool = False, at=None
) -> ReplyJob:
    """A reply job to a guest message stored at ``at``; a done one's reply is accepted by Green API
    ``latency`` seconds later (the one reply latency: guest message stored → send accepted)."""
    job = ReplyJobFactory.create(inbound__conversation__guest__hotel=hotel, status=status, degraded=degraded)
    created = at or SINCE + timedelta(minutes=30)
    completed = created + timedelta(seconds=latency) if latency is not None else None
    outbound = None
    if status == ReplyJob.Status.DONE and completed is not None:
        outbound = MessageFactory.create(
            conversation=job.inbound.conversation,
            direction=Message.Direction.OUTBOUND,
            status=Message.Status.ACCEPTED,
            accepted_at=completed,
        )
    Message.objects.filter(pk=job.inbound_id).update(created_at=created)
    ReplyJob.objects.filter(pk=job.pk).update(created_at=created, completed_at=completed, outbound=outbound)
    return job


def _letter(hotel: Hotel, *, category: str, dependency: str, kind: str, reason_code: str, at=None, **kw: Any):
    row = DeadLetter.objects.create(
        kind=kind, category=category, dependency=dependency, tenant=str(hotel.pk), reason_code=reason_code,
        reason="x", **kw,
    )  # fmt: skip
    DeadLetter.objects.filter(pk=row.pk).update(created_at=at or SINCE + timedelta(minutes=40))
    return row


def _event(name: str, from_state: str, to_state: str, at: datetime) -> None:
    BreakerEvent.objects.create(
        breaker=name, from_state=from_state, to_state=to_state, reason="test", failure_rate=0.0,
        slow_call_rate=0.0, source="local", process="test:1", at=at,
    )  # fmt: skip


@pytest.fixture
def hotels() -> tuple[Hotel, Hotel]:
    return (
        HotelFactory.create(green_api_instance_id="1101000011", name="A"),
        HotelFactory.create(green_api_instance_id="1101000022", name="B"),
    )


@pytest.fixture
def period_rows(hotels) -> dict[str, Any]:
    a, b = hotels
    # hotel A: answered in 10, 20, 30 s (AI) and 40 s (canned), one dead, one still pending
    for seconds in (10, 20, 30):
        _job(a, ReplyJob.Status.DONE, latency=seconds)
    _job(a, ReplyJob.Status.DONE, latency=40, degraded=True)
    _job(a, ReplyJob.Status.DEAD, latency=300)
    _job(a, ReplyJob.Status.PENDING)
    _job(a, ReplyJob.Status.DONE, latency=1, at=SINCE - timedelta(minutes=1))  # before the period
    _job(a, ReplyJob.Status.DONE, latency=1, at=UNTIL)  # after it (the end is exclusive)
    # hotel B: one answered in 500 s, one dead
    _job(b, ReplyJob.Status.DONE, latency=500)
    _job(b, ReplyJob.Status.DEAD, latency=60)
    send, gen = DeadLetter.Kind.REPLY_SEND, DeadLetter.Kind.REPLY_GENERATION
    _letter(a, category="provider_5xx", dependency="green_api", kind=send, reason_code="attempts_exhausted")
    _letter(a, category="provider_5xx", dependency="green_api", kind=send, reason_code="attempts_exhausted")
    _letter(a, category="auth", dependency="deepseek", kind=gen, reason_code="refused", status="manual")
    _letter(
        a, category="timeout", dependency="green_api", kind=send, reason_code="attempts_exhausted",
        status="resolved",
    )  # fmt: skip
    _letter(
        a,
        category="quota",
        dependency="green_api",
        kind=send,
        reason_code="quota",
        at=SINCE - timedelta(hours=5),
    )
    _letter(b, category="rate_limited", dependency="green_api", kind=send, reason_code="rate_limited")
    # green_api: open for 15 minutes inside the period (3 transitions)
    _event("green_api", "closed", "open", SINCE + timedelta(minutes=10))
    _event("green_api", "open", "half_open", SINCE + timedelta(minutes=25))
    _event("green_api", "half_open", "closed", SINCE + timedelta(minutes=26))
    # deepseek: already open when the period starts, closed 5 minutes in
    _event("deepseek", "closed", "open", SINCE - timedelta(hours=1))
    _event("deepseek", "open", "closed", SINCE + timedelta(minutes=5))
    # green_api_journal: forced open for the last minute, still open at the end
    _event("green_api_journal", "closed", "forced_open", UNTIL - timedelta(minutes=1))
    return {"a": a, "b": b}


def test_report_counts_every_tenant_without_a_user(period_rows):
    report = reports.reliability_report(since=SINCE, until=UNTIL)
    assert report["period"] == {"since": SINCE.isoformat(), "until": UNTIL.isoformat()}
    by_result = report["replies"]["by_result"]
    assert (by_result["done"], by_result["degraded"], by_result["dead"], by_result["pending"]) == (4, 1, 2, 1)
    # answered: 10, 20, 30, 40, 500 → nearest rank p50 = 3rd = 30, p95 = 5th = 500
    assert report["replies"]["latency_seconds"] == {"p50": 30.0, "p95": 500.0, "count": 5}
    letters = report["dead_letters"]
    assert letters["created"] == 5
    assert letters["open"] == 5  # 2 pending + 1 manual of A in period, the older quota one, B's one
    assert letters["by_category"] == {"provider_5xx": 2, "auth": 1, "rate_limited": 1, "timeout": 1}
    assert letters["by_dependency"] == {"green_api": 4, "deepseek": 1}
    assert letters["by_kind"] == {"reply_send": 4, "reply_generation": 1}
    assert report["top_failure_reasons"] == [
        {"reason_code": "attempts_exhausted", "count": 3},
        {"reason_code": "rate_limited", "count": 1},
        {"reason_code": "refused", "count": 1},
    ]
    breakers = {b["name"]: b for b in report["breakers"]}
    assert breakers["green_api"]["transitions"] == 3
    assert breakers["green_api"]["seconds_open"] == 900.0
    assert breakers["deepseek"]["transitions"] == 1
    assert breakers["deepseek"]["seconds_open"] == 300.0
    assert breakers["green_api_journal"]["seconds_open"] == 60.0
    assert breakers["green_api"]["state_now"] == "closed"
    json.dumps(report)  # JSON-able as it is


def test_report_for_a_staff_user_counts_only_their_hotel(period_rows):
    staff = User.objects.create_user("reception-a", is_staff=True)
    period_rows["a"].staff.add(staff)
    report = reports.reliability_report(since=SINCE, until=UNTIL, user=staff)
    by_result = report["replies"]["by_result"]
    assert (by_result["done"], by_result["degraded"], by_result["dead"], by_result["pending"]) == (3, 1, 1, 1)
    assert report["replies"]["latency_seconds"] == {"p50": 20.0, "p95": 40.0, "count": 4}
    assert report["dead_letters"]["created"] == 4
    assert "rate_limited" not in report["dead_letters"]["by_category"]  # hotel B's letter
    assert {b["name"] for b in report["breakers"]} >= {"green_api", "deepseek"}  # shared infrastructure
    nobody = User.objects.create_user("no-hotel", is_staff=True)
    empty = reports.reliability_report(since=SINCE, until=UNTIL, user=nobody)
    assert empty["replies"]["latency_seconds"]["count"] == 0
    assert empty["dead_letters"]["created"] == empty["dead_letters"]["open"] == 0


def test_operations_group_sees_every_hotel(period_rows):
    ops = User.objects.create_user("ops", is_staff=True)
    ops.groups.add(Group.objects.create(name=tenancy.OPERATIONS_GROUP))
    report = reports.reliability_report(since=SINCE, until=UNTIL, user=ops)
    assert report["dead_letters"]["created"] == 5


@pytest.mark.parametrize(
    ("events", "open_at_start", "expected"),
    [
        ([], False, 0.0),
        ([], True, 7200.0),
        ([(SINCE + timedelta(minutes=1), "open"), (SINCE + timedelta(minutes=2), "open")], False, 7140.0),
        (
            [(SINCE + timedelta(minutes=1), "forced_open"), (SINCE + timedelta(minutes=3), "disabled")],
            False,
            120.0,
        ),
        ([(SINCE + timedelta(minutes=1), "half_open")], True, 60.0),
    ],
)
def test_seconds_open(events, open_at_start, expected):
    assert reports.seconds_open(events, open_at_start=open_at_start, since=SINCE, until=UNTIL) == expected


def test_empty_period_and_bad_periods():
    report = reports.reliability_report(since=SINCE, until=UNTIL)
    assert report["replies"]["latency_seconds"] == {"p50": None, "p95": None, "count": 0}
    assert report["top_failure_reasons"] == []
    with pytest.raises(ValidationFailed, match="must end after it starts"):
        reports.reliability_report(since=UNTIL, until=SINCE)


# --- the command -----------------------------------------------------------------------------------
def test_command_text_and_json(period_rows, monkeypatch):
    monkeypatch.setattr(reports.timezone, "now", lambda: UNTIL)
    text = StringIO()
    call_command("reliability_report", "--hours", "2", stdout=text)
    out = text.getvalue()
    assert "Replies by result" in out
    assert "Top failure reasons" in out
    assert any(line.split() == ["green_api", "closed", "3", "900.0"] for line in out.splitlines())
    raw = StringIO()
    call_command("reliability_report", "--hours", "2", "--json", stdout=raw)
    data = json.loads(raw.getvalue())
    assert data["replies"]["latency_seconds"]["p95"] == 500.0
    assert data["dead_letters"]["by_dependency"]["deepseek"] == 1


@pytest.mark.parametrize("hours", ["0", "721"])
def test_command_rejects_bad_hours(hours):
    with pytest.raises(CommandError, match="between 1 and 720"):
        call_command("reliability_report", "--hours", hours, stdout=StringIO())


# --- the hourly task and admin ----------------------------------------------------------------------
def test_hourly_task_stores_the_last_full_hour_once(period_rows, monkeypatch):
    monkeypatch.setattr(reports.timezone, "now", lambda: SINCE + timedelta(hours=1, minutes=5))
    first = tasks.reliability_report_hourly()
    again = tasks.reliability_report_hourly()  # acks_late may run it twice
    assert first == again
    stored = ReliabilityReport.objects.get()
    assert (stored.period_start, stored.period_end) == (SINCE, SINCE + timedelta(hours=1))
    assert stored.data["replies"]["by_result"]["dead"] == 2
    assert stored.data["breakers"]


def test_stored_reports_are_read_only_in_admin_and_for_operations_only(period_rows, client):
    ReliabilityReport.objects.create(period_start=SINCE, period_end=UNTIL, data={"replies": {}})
    url = reverse("admin:reliability_reliabilityreport_changelist")
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(url).status_code == 403
    admin_user = User.objects.create_superuser("root", password="pw")
    client.force_login(admin_user)
    assert client.get(url).status_code == 200
    report = ReliabilityReport.objects.get()
    change = client.get(reverse("admin:reliability_reliabilityreport_change", args=[report.pk]))
    assert change.status_code == 200
    assert b"<pre>" in change.content
    assert b'name="_save"' not in change.content
    assert client.get(reverse("admin:reliability_reliabilityreport_add")).status_code == 403


# --- the API ---------------------------------------------------------------------------------------
URL = "/api/v1/reports/reliability/"


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


def test_api_report_is_scoped_to_the_user(period_rows, api_client, monkeypatch):
    monkeypatch.setattr(reports.timezone, "now", lambda: UNTIL)
    staff = User.objects.create_user("reception-b", is_staff=True)
    staff.groups.add(Group.objects.get(name=HOTEL_STAFF_GROUP))  # view_reliabilityreport
    period_rows["b"].staff.add(staff)
    api_client.force_authenticate(staff)
    response = api_client.get(URL, {"hours": 2})
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["replies"]["by_result"]["done"] == 1
    assert data["replies"]["latency_seconds"] == {"p50": 500.0, "p95": 500.0, "count": 1}
    assert data["dead_letters"]["by_category"] == {"rate_limited": 1}


@pytest.mark.parametrize("hours", ["banana", "0", "100000", "1.5"])
def test_api_bad_hours_is_a_400_in_the_envelope(api_client, hours):
    api_client.force_authenticate(User.objects.create_superuser("root"))
    response = api_client.get(URL, {"hours": hours})
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == "invalid"
    assert "hours" in body["error"]["details"]


def test_api_needs_an_admin_user(api_client):
    assert api_client.get(URL).status_code in (401, 403)
    api_client.force_authenticate(User.objects.create_user("guest-user"))
    response = api_client.get(URL)
    assert response.status_code == 403
    assert "error" in response.json()


def test_the_report_has_the_handoff_figures_of_the_period():
    hotel = HotelFactory.create()
    handed = SINCE + timedelta(minutes=10)
    for minutes in (3, 9):
        ConversationFactory.create(
            guest__hotel=hotel,
            owner="staff",
            owner_reason="staff_took",
            owner_since=handed,
            handoff_at=handed,
            staff_replied_at=handed + timedelta(minutes=minutes),
            last_message_at=handed,
        )
    ConversationFactory.create(guest__hotel=hotel, last_message_at=handed)  # the bot's alone
    report = reports.reliability_report(since=SINCE, until=UNTIL)
    assert report["handoffs"] == {
        "waiting": 0,
        "waiting_past_target": 0,
        "first_human_reply_seconds": {"p50": 180.0, "p95": 540.0, "count": 2},
        "conversations": 3,
        "resolved_by_bot": 1,
        "resolved_by_bot_share": 0.3333,
    }
    json.dumps(report)  # stored as JSON by the hourly task
