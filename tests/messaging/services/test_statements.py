"""Reads compiled once per process and single-row updates (``messaging.services.statements``): the
same rows and instances as the ORM's own path, one statement, no compilation after the first."""

from __future__ import annotations

from datetime import datetime, timedelta
from unittest import mock

import pytest
from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.sql.compiler import SQLCompiler
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from messaging.models import Conversation, Guest, Message, ReplyJob
from messaging.services import statements
from tests.factories import ConversationFactory, MessageFactory, ReplyJobFactory

pytestmark = pytest.mark.django_db

_RELATED = ("inbound__conversation__guest", "inbound__conversation__hotel", "outbound")


def _job_with_relations(job_id: int, token: str) -> QuerySet[ReplyJob]:
    return ReplyJob.objects.select_related(*_RELATED).filter(pk=job_id, lease_token=token)[:1]


def _recent(conversation_id: int, before_id: int) -> QuerySet[Message]:
    return Message.objects.filter(conversation_id=conversation_id, pk__lt=before_id).order_by("-pk")[:5]


def _statuses(guest_id: int) -> QuerySet[ReplyJob, tuple[str, datetime]]:
    return ReplyJob.objects.filter(inbound__conversation__guest_id=guest_id).values_list(
        "status", "next_attempt_at"
    )


def _by_prefix(text: str) -> QuerySet[Message]:
    return Message.objects.filter(text__startswith=text)


def _fields(obj: object) -> dict[str, object]:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}  # type: ignore[attr-defined]


def test_a_select_related_read_gives_the_orms_instances_with_their_relations_cached():
    # Given a job with an outbound message, under a lease token
    job = ReplyJobFactory.create(lease_token="t1", next_attempt_at=timezone.now() - timedelta(seconds=3))
    outbound = MessageFactory.create(
        conversation=job.inbound.conversation, direction=Message.Direction.OUTBOUND, text="Hi"
    )
    ReplyJob.objects.filter(pk=job.pk).update(outbound=outbound)
    expected = ReplyJob.objects.select_related(*_RELATED).get(pk=job.pk)
    # When it is read through a prepared read, twice (the second from the compiled statement)
    statements.prepared_read(_job_with_relations, job.pk, "t1")
    with CaptureQueriesContext(connection) as queries:
        [got] = statements.prepared_read(_job_with_relations, job.pk, "t1")
        # Then every relation comes with it: one statement, no lazy load
        conversation = got.inbound.conversation
        related = (got.inbound, conversation, conversation.guest, conversation.hotel, got.outbound)
        assert got.outbound is not None
    assert len(queries) == 1
    assert _fields(got) == _fields(expected)
    for mine, theirs in zip(
        related,
        (
            expected.inbound,
            expected.inbound.conversation,
            expected.inbound.conversation.guest,
            expected.inbound.conversation.hotel,
            expected.outbound,
        ),
        strict=True,
    ):
        assert _fields(mine) == _fields(theirs)
    # (the encrypted token went through its field's converter, as the ORM's read does)
    assert conversation.hotel.green_api_token == expected.inbound.conversation.hotel.green_api_token
    assert got._state.adding is False
    assert got._state.db == "default"


def test_the_arguments_select_the_rows_and_a_miss_is_empty():
    job = ReplyJobFactory.create(lease_token="mine")
    assert statements.prepared_read(_job_with_relations, job.pk, "theirs") == []
    assert statements.prepared_read(_job_with_relations, job.pk + 1000, "mine") == []
    assert [j.pk for j in statements.prepared_read(_job_with_relations, job.pk, "mine")] == [job.pk]


def test_ordering_and_slices_hold_and_values_list_gives_tuples():
    conversation = ConversationFactory.create()
    messages = [MessageFactory.create(conversation=conversation, text=f"m{i}") for i in range(8)]
    last = messages[-1]
    got = statements.prepared_read(_recent, conversation.pk, last.pk)
    assert [m.pk for m in got] == list(_recent(conversation.pk, last.pk).values_list("pk", flat=True))
    assert len(got) == 5
    job = ReplyJobFactory.create(inbound=messages[0])
    assert statements.prepared_read(_statuses, conversation.guest_id) == list(
        _statuses(conversation.guest_id)
    )
    assert statements.prepared_read(_statuses, conversation.guest_id)[0] == (job.status, job.next_attempt_at)


def test_it_compiles_once_per_process():
    conversation = ConversationFactory.create()
    message = MessageFactory.create(conversation=conversation)
    statements.prepared_read(_recent, conversation.pk, message.pk)
    with mock.patch.object(SQLCompiler, "as_sql", autospec=True, side_effect=SQLCompiler.as_sql) as as_sql:
        statements.prepared_read(_recent, conversation.pk, message.pk + 1)
        statements.prepared_read(_recent, conversation.pk + 1, message.pk)
        assert as_sql.call_count == 0
        statements._compile.cache_clear()  # a new process: the first read compiles
        statements.prepared_read(_recent, conversation.pk, message.pk)
    assert as_sql.call_count >= 1


def test_an_argument_the_orm_rewrites_is_refused():
    # startswith makes a LIKE pattern of it: the compiled statement could not take another value
    with pytest.raises(ValueError, match="not plain parameters"):
        statements.prepared_read(_by_prefix, "Hel")


def test_update_row_writes_what_the_orms_update_writes():
    guest = ConversationFactory.create().guest
    other = ConversationFactory.create().guest
    assert statements.update_row(Guest, guest.pk, {"language": "de"}) == 1
    assert statements.update_row(Guest, guest.pk + 10_000, {"language": "fr"}) == 0
    assert Guest.objects.get(pk=guest.pk).language == "de"
    assert Guest.objects.get(pk=other.pk).language == other.language


def test_insert_row_stores_what_create_stores_and_gives_the_key():
    conversation = ConversationFactory.create()
    fields = {
        "conversation": conversation,
        "hotel_id": conversation.hotel_id,
        "direction": Message.Direction.OUTBOUND,
        "text": "Check-out is at 11:00.",
        "status": Message.Status.PENDING,
    }
    mine = Message(**fields)
    statements.insert_row(mine)
    theirs = Message.objects.create(**fields)
    assert mine.pk is not None
    assert not mine._state.adding
    stored = Message.objects.get(pk=mine.pk)
    ignored = {"id", "created_at", "updated_at"}
    assert {k: v for k, v in _fields(stored).items() if k not in ignored} == {
        k: v for k, v in _fields(Message.objects.get(pk=theirs.pk)).items() if k not in ignored
    }
    assert stored.created_at == mine.created_at


def _waiting_since(conversation_id: int, since: datetime) -> QuerySet[Message]:
    return Message.objects.filter(conversation_id=conversation_id, created_at__gte=since).order_by("pk")


def _lease_if_bot_owns(
    job_id: int, token: str, now: datetime, until: datetime
) -> tuple[QuerySet[ReplyJob], dict]:
    owner = Conversation.objects.filter(
        Q(owner=Conversation.Owner.BOT) | Q(owner=Conversation.Owner.STAFF, owner_until__lte=now),
        pk=OuterRef("inbound__conversation_id"),
    )
    jobs = ReplyJob.objects.filter(Exists(owner), pk=job_id, lease_token=token)
    return jobs, {"lease_expires_at": until, "send_started_at": now}


def test_a_datetime_argument_reaches_the_sql_as_its_columns_value():
    message = MessageFactory.create()
    created = Message.objects.get(pk=message.pk).created_at
    conversation_id = message.conversation_id
    assert statements.prepared_read(_waiting_since, conversation_id, created) == [message]
    assert (
        statements.prepared_read(_waiting_since, conversation_id, created + timedelta(microseconds=1)) == []
    )


def test_a_prepared_update_writes_what_the_orms_update_writes_under_the_same_conditions():
    # Given two leased jobs: the bot owns the first one's conversation, staff the second's for an hour
    now = timezone.now()
    mine = ReplyJobFactory.create(lease_token="a")
    staffs = ReplyJobFactory.create(lease_token="b")
    Conversation.objects.filter(pk=staffs.inbound.conversation_id).update(
        owner=Conversation.Owner.STAFF, owner_until=now + timedelta(hours=1)
    )
    until = now + timedelta(seconds=90)
    # When each is updated through the compiled statement
    assert statements.prepared_update(_lease_if_bot_owns, mine.pk, "a", now, until) == 1
    assert statements.prepared_update(_lease_if_bot_owns, mine.pk, "other", now, until) == 0
    assert statements.prepared_update(_lease_if_bot_owns, staffs.pk, "b", now, until) == 0
    # Then it wrote (and refused) as the ORM's own update does
    mine.refresh_from_db()
    assert (mine.lease_expires_at, mine.send_started_at) == (until, now)
    jobs, values = _lease_if_bot_owns(staffs.pk, "b", now, until)
    assert jobs.update(**values) == 0
    later = now + timedelta(hours=2)  # the staff hold has ended: the bot answers again
    assert statements.prepared_update(_lease_if_bot_owns, staffs.pk, "b", later, until) == 1
