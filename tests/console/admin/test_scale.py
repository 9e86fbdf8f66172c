"""The big tables' changelists cost the same number of queries on 10 rows and on 200, never count a
whole table, never DISTINCT over it, and (PostgreSQL) read by index (console/admin/scale.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.db.models import Q
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from console.admin import messaging as messaging_admin
from console.admin import scale
from messaging.models import Conversation, DeliveryAttempt, Guest, Hotel, Message, ReplyJob
from reliability.models import AuditEntry, DeadLetter
from tests.factories import HotelFactory

pytestmark = pytest.mark.django_db

BIG = (
    "messaging_message",
    "messaging_replyjob",
    "messaging_deliveryattempt",
    "reliability_deadletter",
    "reliability_auditentry",
)
PER_PAGE = 5


def _world(rows: int, instance: str = "1101000001") -> Hotel:
    """``rows`` guests' questions, each with its reply job, two attempts and a dead letter, and as
    many audit entries (set-based inserts)."""
    hotel = HotelFactory.create(green_api_instance_id=instance)
    now = timezone.now()
    guests = Guest.objects.bulk_create(
        Guest(hotel=hotel, chat_id=f"7900{n:07d}@c.us", display_name=f"G{n}") for n in range(rows)
    )
    conversations = Conversation.objects.bulk_create(
        Conversation(hotel=hotel, guest=g, last_message_at=now) for g in guests
    )
    inbound = Message.objects.bulk_create(
        Message(
            conversation=c,
            hotel=hotel,
            direction=Message.Direction.INBOUND,
            text=f"breakfast question {n}",
            provider_message_id=f"IN{n:030X}",
            status=Message.Status.RECEIVED,
        )
        for n, c in enumerate(conversations)
    )
    jobs = ReplyJob.objects.bulk_create(
        ReplyJob(inbound=m, status=ReplyJob.Status.DONE, next_attempt_at=now, completed_at=now)
        for m in inbound
    )
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(job=j, attempt=1, step=step, started_at=now, duration_ms=5, outcome="ok")
        for j in jobs
        for step in ("generate", "send")
    )
    DeadLetter.objects.bulk_create(
        DeadLetter(
            kind=DeadLetter.Kind.REPLY_SEND,
            subject=f"reply job {j.pk}",
            subject_type="messaging.replyjob",
            subject_id=j.pk,
            tenant=str(hotel.pk),
            dependency="green_api",
            reason_code="attempts_exhausted",
            reason="Green API answered 502 five times.",
        )
        for j in jobs
    )
    AuditEntry.objects.bulk_create(
        AuditEntry(
            actor_name="system",
            via=AuditEntry.Via.SYSTEM,
            action="dead_letter.retry",
            target_type="reliability.deadletter",
            target_id=str(n),
            tenant=str(hotel.pk),
        )
        for n in range(rows)
    )
    return hotel


def _urls(hotel: Hotel) -> list[str]:
    message = Message.objects.order_by("-pk").first()
    job = ReplyJob.objects.order_by("-pk").first()
    assert message is not None
    assert job is not None
    h = hotel.pk
    return [
        "/admin/messaging/message/",
        "/admin/messaging/message/?q=7900000",  # a guest's number, by prefix
        f"/admin/messaging/message/?q={message.pk}",
        f"/admin/messaging/message/?q={message.provider_message_id}",
        "/admin/messaging/message/?q=breakfast",
        "/admin/messaging/message/?direction__exact=in",
        "/admin/messaging/message/?status__exact=received",
        f"/admin/messaging/message/?hotel={h}",
        "/admin/messaging/message/?recent=24h",
        f"/admin/messaging/message/?before={message.pk}",
        "/admin/messaging/message/?p=2",
        "/admin/messaging/replyjob/",
        f"/admin/messaging/replyjob/?q={job.pk}",
        "/admin/messaging/replyjob/?q=+7 900 000",
        "/admin/messaging/replyjob/?status__exact=done",
        "/admin/messaging/replyjob/?degraded__exact=0",
        f"/admin/messaging/replyjob/?hotel={h}",
        "/admin/messaging/replyjob/?recent=7d",
        f"/admin/messaging/replyjob/?before={job.pk}",
        "/admin/messaging/replyjob/?p=2",
        "/admin/messaging/deliveryattempt/",
        f"/admin/messaging/deliveryattempt/?q={job.pk}",
        "/admin/messaging/deliveryattempt/?step__exact=send",
        "/admin/messaging/deliveryattempt/?outcome__exact=ok",
        f"/admin/messaging/deliveryattempt/?hotel={h}",
        "/admin/messaging/deliveryattempt/?recent=1h",
        "/admin/messaging/deliveryattempt/?p=2",
        "/admin/messaging/guest/?q=7900000",
        f"/admin/messaging/guest/?hotel={h}",
        "/admin/messaging/conversation/?q=7900000",
        "/admin/messaging/conversation/?recent=30d",
        "/admin/messaging/guest/",
        "/admin/messaging/conversation/",
        "/admin/reliability/deadletter/",
        f"/admin/reliability/deadletter/?q={job.pk:05d}",  # an id (of the same length in both worlds)
        "/admin/reliability/deadletter/?q=attempts_exhausted",
        f"/admin/reliability/deadletter/?hotel={h}",
        "/admin/reliability/deadletter/?status__exact=pending",
        "/admin/reliability/auditentry/",
        "/admin/reliability/auditentry/?recent=24h",
        "/admin/reliability/auditentry/?q=dead_letter.retry",
        "/admin/reliability/auditentry/?via__exact=system",
    ]


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    for admin_class in (
        messaging_admin.MessageAdmin,
        messaging_admin.ReplyJobAdmin,
        messaging_admin.DeliveryAttemptAdmin,
    ):
        monkeypatch.setattr(admin_class, "list_per_page", PER_PAGE)


def _load(client: Client, url: str) -> list[dict[str, Any]]:
    with CaptureQueriesContext(connection) as captured:
        page = client.get(url)
    assert page.status_code == 200, url
    assert "?e=1" not in page.get("Location", ""), url
    # The page's own reads (not savepoints, nor the site-wide degradation banner's cached read).
    return [
        q
        for q in captured.captured_queries
        if re.search(r'"(messaging_|reliability_(deadletter|audit))', q["sql"])
    ]


def _offending(queries: list[dict[str, Any]]) -> list[str]:
    """DISTINCT over a big table anywhere; on PostgreSQL also a COUNT(*) not bounded by a LIMIT."""
    bad = []
    for q in queries:
        sql = q["sql"]
        big = any(f'"{t}"' in sql for t in BIG)
        if big and re.search(r"SELECT DISTINCT", sql, re.I):
            bad.append(sql)
        if big and connection.vendor == "postgresql" and "COUNT(*)" in sql and "LIMIT" not in sql:
            bad.append(sql)
    return bad


def test_changelists_cost_the_same_on_10_and_200_rows(ops_client: Client, small_pages: None) -> None:
    urls = _urls(_world(10))
    for url in urls:  # warm up: the session, permissions and content types are read once
        _load(ops_client, url)
    small = [len(_load(ops_client, url)) for url in urls]
    Message.objects.all().delete()
    Guest.objects.all().delete()
    DeadLetter.objects.all().delete()
    AuditEntry.objects.all().delete()
    for url, expected in zip(_urls(_world(200)), small, strict=True):
        queries = _load(ops_client, url)
        assert len(queries) == expected, (url, [q["sql"][:300] for q in queries])
        assert _offending(queries) == [], url


def test_show_older_walks_past_the_last_page_by_id(ops_client: Client, small_pages: None) -> None:
    _world(30)
    page = ops_client.get("/admin/messaging/message/")
    body = page.content.decode()
    assert "Show older" in body
    newest = list(Message.objects.order_by("-pk").values_list("pk", flat=True))
    assert f"before={newest[PER_PAGE - 1]}" in body
    older = ops_client.get(f"/admin/messaging/message/?before={newest[PER_PAGE - 1]}")
    assert [r.pk for r in older.context["cl"].result_list] == newest[PER_PAGE : 2 * PER_PAGE]


def test_a_bad_keyset_or_filter_value_is_the_admins_error_page_not_a_traceback(ops_client: Client) -> None:
    for url in ("/admin/messaging/message/?before=x", "/admin/messaging/message/?recent=1y"):
        assert ops_client.get(url).status_code in (200, 302), url


def test_the_hotel_filter_of_jobs_and_attempts_shows_that_hotels_rows_only(ops_client: Client) -> None:
    mine, other = _world(3), _world(2, instance="1101000002")
    jobs = ops_client.get(f"/admin/messaging/replyjob/?hotel={mine.pk}").context["cl"].result_list
    assert sorted(j.pk for j in jobs) == sorted(
        ReplyJob.objects.filter(inbound__hotel=mine).values_list("pk", flat=True)
    )
    attempts = ops_client.get(f"/admin/messaging/deliveryattempt/?hotel={other.pk}").context["cl"].result_list
    assert len(attempts) == 4
    assert {a.job.inbound.hotel_id for a in attempts} == {other.pk}


def test_dead_letters_and_audit_entries_are_searched_by_what_an_index_answers(
    ops_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    _world(3)
    job = ReplyJob.objects.order_by("pk").first()
    assert job is not None
    letter = DeadLetter.objects.get(subject=f"reply job {job.pk}")

    def found(url: str) -> list[int]:
        return [row.pk for row in ops_client.get(url).context["cl"].result_list]

    def by_number(number: int) -> set[int]:  # a number is a letter's id or its reply job's
        subject = f"reply job {number}"
        return set(DeadLetter.objects.filter(Q(pk=number) | Q(subject=subject)).values_list("pk", flat=True))

    # Ids of letters and jobs overlap (PostgreSQL's sequences differ): either may answer a number.
    for number in (job.pk, letter.pk):
        assert letter.pk in found(f"/admin/reliability/deadletter/?q={number}")
        assert set(found(f"/admin/reliability/deadletter/?q={number}")) == by_number(number)
    assert len(found("/admin/reliability/deadletter/?q=attempts_exhausted")) == 3
    assert len(found("/admin/reliability/deadletter/?q=five times")) == 3  # among the newest letters
    monkeypatch.setattr(scale, "COUNT_CAP", 1)
    assert found("/admin/reliability/deadletter/?q=five times") == [letter.pk + 2]  # never a whole scan
    assert len(found("/admin/reliability/auditentry/?q=dead_letter.retry")) == 3
    assert len(found("/admin/reliability/auditentry/?q=1")) == 1  # a target's id
    assert found("/admin/reliability/auditentry/?q=ops") == []  # a username: ops did nothing


@pytest.mark.skipif(connection.vendor != "postgresql", reason="plans are PostgreSQL's")
def test_the_list_queries_can_use_an_index(ops_client: Client, small_pages: None) -> None:
    hotel = _world(200)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    for url in _urls(hotel):
        if "/deadletter/" in url or "/auditentry/" in url:
            continue
        for q in _load(ops_client, url):
            sql = q["sql"]
            if not sql.startswith("SELECT") or not any(f'FROM "{t}"' in sql for t in BIG):
                continue
            if re.match(r"SELECT COUNT\(\*\) FROM \(SELECT .* LIMIT \d+\) subquery$", sql, re.S):
                continue  # the capped count stops after COUNT_CAP+1 rows whatever the plan
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL enable_seqscan = off")
                cursor.execute("EXPLAIN " + sql)
                plan = "\n".join(row[0] for row in cursor.fetchall())
            for table in BIG:
                assert f"Seq Scan on {table}" not in plan, f"{url}\n{sql}\n{plan}"
