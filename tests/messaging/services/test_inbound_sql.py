"""A guest message stored in one statement on PostgreSQL (messaging/services/inbound_sql.py).

The statement must write exactly the rows the ORM path writes (SQLite's path, run by every other
intake test in the embedded configuration): the same guest, conversation, message and reply job
for each step of a guest's history, compared field by field from the models, so a field added to
any of them is compared too.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import DataError, connection, transaction
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from messaging.models import Conversation, Guest, Hotel, Message, ReplyJob
from messaging.notifications import IncomingMessage, RawBody, parse_webhook_body
from messaging.services import intake
from reliability.models import DeadLetter
from tests.factories import ConversationFactory, HotelFactory, MessageFactory
from tests.messaging import payloads

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="data-modifying CTEs are PostgreSQL's; SQLite takes the ORM path (the services run tests this)",
)
URL = "/webhooks/green-api/"
ORM_INSTANCE, SQL_INSTANCE = 1101000001, 1101000002
#: Fields that differ between two hotels' copies of the same history by construction.
UNCOMPARED = {"id", "hotel", "guest", "conversation", "inbound", "provider_message_id", "published_task_id"}


def _incoming(*, instance: int, n: int, sender_name: str) -> IncomingMessage:
    body = payloads.incoming_text(
        id_message=f"{instance}-{n}", text=f"question {n}", sender_name=sender_name, id_instance=instance
    )
    notification = parse_webhook_body(RawBody(json.dumps(body).encode(), 0))
    assert isinstance(notification, IncomingMessage)
    return notification


def _rows(hotel: Hotel) -> dict[str, list[dict[str, Any]]]:
    """Every row of the hotel's guest history, timestamps as 'set or not' (they are each path's now)."""

    def plain(obj: Any) -> dict[str, Any]:
        values = model_to_dict(obj, exclude=list(UNCOMPARED))
        return {k: (v is not None) if k.endswith("_at") else v for k, v in values.items()}

    messages = Message.objects.filter(conversation__hotel=hotel).order_by("pk")
    return {
        "guests": [plain(g) for g in Guest.objects.filter(hotel=hotel).order_by("pk")],
        "conversations": [
            {**plain(c), "messages": c.messages.count()}
            for c in Conversation.objects.filter(hotel=hotel).order_by("pk")
        ],
        "messages": [plain(m) for m in messages],
        "jobs": [plain(j) for j in ReplyJob.objects.filter(inbound__in=messages).order_by("pk")],
    }


@pytest.mark.django_db
def test_the_statement_writes_what_the_orm_path_writes() -> None:
    orm_hotel = HotelFactory.create(green_api_instance_id=str(ORM_INSTANCE))
    HotelFactory.create(green_api_instance_id=str(SQL_INSTANCE))
    history = [
        ("Ana", None),  # a new guest: guest, conversation, message, job
        ("", None),  # an empty sender name keeps the name; the recent conversation is touched
        ("Ana M.", None),  # a new name is taken
        ("Ana M.", "idle"),  # silent past CONVERSATION_IDLE_HOURS: a new conversation
    ]
    for n, (name, before) in enumerate(history):
        if before == "idle":
            silent_since = timezone.now() - timedelta(hours=settings.CONVERSATION_IDLE_HOURS, minutes=1)
            Conversation.objects.update(last_message_at=silent_since)
        orm = intake.inbound_message_record(
            hotel=orm_hotel, incoming=_incoming(instance=ORM_INSTANCE, n=n, sender_name=name), stored_as=None
        )
        sql = intake.notification_ingest(notification=_incoming(instance=SQL_INSTANCE, n=n, sender_name=name))
        assert (orm.action, sql.action) == ("stored", "stored")
    sql_hotel = Hotel.objects.get(green_api_instance_id=str(SQL_INSTANCE))
    expected = _rows(orm_hotel)
    assert expected["guests"][0]["display_name"] == "Ana M."
    assert [c["messages"] for c in expected["conversations"]] == [3, 1]
    assert _rows(sql_hotel) == expected


@pytest.mark.django_db(transaction=True)
def test_a_guest_message_is_one_statement_and_no_transaction_around_it(webhook_client: Any) -> None:
    HotelFactory.create()
    webhook_client.post(
        URL, payloads.incoming_text(id_message="WARM"), format="json"
    )  # the process's snapshots
    with CaptureQueriesContext(connection) as queries:
        response = webhook_client.post(URL, payloads.incoming_text(id_message="ONE"), format="json")
    assert response.json() == {"status": "stored"}
    assert len(queries.captured_queries) == 1, [q["sql"][:60] for q in queries.captured_queries]
    job = ReplyJob.objects.get(inbound__provider_message_id="ONE")
    assert (job.status, job.published_at is not None, len(job.published_task_id)) == ("pending", True, 36)


@pytest.mark.django_db
@pytest.mark.parametrize("sender_name", ["Ana", ""])
def test_the_statement_stays_in_psycopgs_cache_of_parsed_queries(
    webhook_client: Any, sender_name: str
) -> None:
    """psycopg parses a query's placeholders once and caches it only for queries of at most
    MAX_CACHED_STATEMENT_LENGTH bytes and MAX_CACHED_STATEMENT_PARAMS parameters; above either, it
    re-parses the statement on every webhook (~1.3 ms of CPU: docs/cost.md)."""
    from psycopg import _queries

    HotelFactory.create()
    seen: list[tuple[str, int]] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if "pg_advisory_xact_lock" in sql:
            seen.append((sql, len(params)))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        body = payloads.incoming_text(id_message="CACHED", sender_name=sender_name)
        response = webhook_client.post(URL, body, format="json")
    assert response.json() == {"status": "stored"}
    [(sql, params)] = seen
    assert len(sql.encode()) <= _queries.MAX_CACHED_STATEMENT_LENGTH
    assert params <= _queries.MAX_CACHED_STATEMENT_PARAMS


@pytest.mark.django_db
def test_a_redelivery_or_an_unknown_instance_writes_nothing(webhook_client: Any) -> None:
    HotelFactory.create()
    first = webhook_client.post(URL, payloads.incoming_text(id_message="R1"), format="json")
    again = webhook_client.post(URL, payloads.incoming_text(id_message="R1", text="changed"), format="json")
    unknown = webhook_client.post(
        URL, payloads.incoming_text(id_message="U1", id_instance=1101000077), format="json"
    )
    assert [r.json()["status"] for r in (first, again, unknown)] == ["stored", "duplicate", "quarantined"]
    assert (Guest.objects.count(), Conversation.objects.count(), ReplyJob.objects.count()) == (1, 1, 1)
    assert Message.objects.get().text == "What time is check-out?"
    assert DeadLetter.objects.get().reason_code == "unknown_instance"


@pytest.mark.django_db
def test_a_statement_the_database_refuses_is_quarantined_for_the_hotel(webhook_client: Any) -> None:
    hotel = HotelFactory.create()

    def refuse(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if "WITH hotel AS" in sql:
            raise DataError("value too long for type character varying(64)")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse):
        response = webhook_client.post(URL, payloads.incoming_text(id_message="REFUSED"), format="json")
    assert response.json() == {"status": "quarantined"}
    letter = DeadLetter.objects.get()
    assert (letter.reason_code, letter.tenant) == (
        "storage_error",
        str(hotel.pk),
    )  # staff of the hotel see it
    assert not Message.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_delivery_committed_while_the_statement_waits_is_a_duplicate(webhook_client: Any) -> None:
    """A real race: another delivery of the same idMessage holds the unique key uncommitted when our
    statement runs; it waits for that transaction, then fails on the key (IntegrityError): the
    answer is "duplicate" and nothing of ours remains."""
    hotel = HotelFactory.create()
    holding, failed = threading.Event(), []

    def other_delivery() -> None:
        try:
            with transaction.atomic():
                conversation = ConversationFactory.create(
                    guest__hotel=hotel, guest__chat_id="79000000001@c.us"
                )
                MessageFactory.create(
                    conversation=conversation, provider_message_id="SAME", status="received"
                )
                holding.set()
                time.sleep(0.5)  # our statement is waiting on the key meanwhile
        except Exception as e:  # pragma: no cover - reported below
            failed.append(e)
        finally:
            connection.close()

    other = threading.Thread(target=other_delivery)
    other.start()
    assert holding.wait(5)
    response = webhook_client.post(URL, payloads.incoming_text(id_message="SAME"), format="json")
    other.join(5)
    assert failed == []
    assert response.json() == {"status": "duplicate"}
    assert Message.objects.filter(provider_message_id="SAME").count() == 1
    assert Guest.objects.count() == 1  # the guest of our statement was rolled back with it
    assert not ReplyJob.objects.exists()


@pytest.mark.django_db
def test_server_side_binding_takes_the_orm_path(monkeypatch: pytest.MonkeyPatch, webhook_client: Any) -> None:
    """A prepared statement holds one command: with server-side binding the lock and the statement
    cannot share an ``execute``, so guest messages take the ORM path (serialised per guest too)."""
    from messaging.services import inbound_sql

    assert inbound_sql.available()
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "server_side_binding", True)
    assert not inbound_sql.available()
    HotelFactory.create()
    with CaptureQueriesContext(connection) as queries:
        response = webhook_client.post(URL, payloads.incoming_text(id_message="SSB"), format="json")
    assert response.json() == {"status": "stored"}
    assert not any("pg_advisory_xact_lock" in q["sql"] for q in queries.captured_queries)
    assert Message.objects.get(provider_message_id="SSB").hotel_id == Hotel.objects.get().pk
