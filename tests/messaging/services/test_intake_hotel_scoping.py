"""Many hotels, one deployment (issue 16 items 1 and 3): redeliveries are recognised per hotel, and
status, journal and state notifications touch only the rows of the hotel whose instance reports
them (the webhook has checked that the token is that hotel's; these tests start at its one call,
``intake.notification_ingest``, so they hold whatever token scheme authenticates the request).

Green API's idMessage is unique per instance, not across instances: two hotels can see the same id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from fakes.green_api import FakeGreenApi
from messaging.clients import green_api
from messaging.models import DeferredStatus, Guest, Hotel, Message, ReplyJob
from messaging.notifications import RawBody, parse_webhook_body
from messaging.services import intake, replies, statuses
from tests.factories import ConversationFactory, HotelFactory, MessageFactory, ReplyJobFactory
from tests.messaging import payloads

pytestmark = pytest.mark.django_db
A, B = 1101000001, 1101000002


@pytest.fixture
def hotels() -> tuple[Hotel, Hotel]:
    return (
        HotelFactory.create(name="Seaside Inn", green_api_instance_id=str(A)),
        HotelFactory.create(name="Harbour Hotel", green_api_instance_id=str(B)),
    )


def _from(instance: int, body: dict[str, Any]) -> intake.IngestResult:
    """The notification ``body`` as hotel ``instance``'s Green API instance sends it."""
    body = {**body, "instanceData": {**body["instanceData"], "idInstance": instance}}
    return intake.notification_ingest(notification=parse_webhook_body(RawBody(json.dumps(body).encode(), 0)))


@pytest.fixture
def fake_green_b(settings: Any) -> Iterator[FakeGreenApi]:
    """Hotel B's own Green API instance (one instance per fake server)."""
    with FakeGreenApi(id_instance=str(B), status_delays=(0.05, 0.1, 0.15), rate_limits=False) as fake:
        yield fake


def _outbound(hotel: Hotel, *, id_message: str | None, status: str = "accepted", text: str = "Hi") -> Message:
    guest, _ = Guest.objects.get_or_create(hotel=hotel, chat_id=payloads.CHAT)
    conversation = ConversationFactory.create(guest=guest)
    return MessageFactory.create(
        conversation=conversation, direction="out", provider_message_id=id_message, status=status, text=text
    )


# --- deduplication per hotel -----------------------------------------------------------------------
def test_the_same_id_message_at_two_hotels_is_stored_and_answered_for_each(
    hotels: tuple[Hotel, Hotel],
    intake_path: str,
    fake_green: FakeGreenApi,
    fake_green_b: FakeGreenApi,
    fake_deepseek: Any,
    settings: Any,
) -> None:
    hotel_a, hotel_b = hotels
    first = _from(A, payloads.incoming_text(id_message="SAME-ID", text="When is breakfast?"))
    second = _from(B, payloads.incoming_text(id_message="SAME-ID", text="Is there parking?"))
    assert (first.action, second.action) == ("stored", "stored")

    # A redelivery is still a no-op, recognised within its own hotel.
    again_b = _from(B, payloads.incoming_text(id_message="SAME-ID", text="Is there parking?"))
    again_a = _from(A, payloads.incoming_text(id_message="SAME-ID", text="When is breakfast?"))
    assert (again_a.action, again_a.message_id) == ("duplicate", first.message_id)
    assert (again_b.action, again_b.message_id) == ("duplicate", second.message_id)

    stored = {m.hotel_id: m for m in Message.objects.filter(provider_message_id="SAME-ID")}
    assert set(stored) == {hotel_a.pk, hotel_b.pk}
    assert all(m.conversation.hotel_id == m.hotel_id for m in stored.values())
    assert stored[hotel_b.pk].text == "Is there parking?"

    # Both answered, each through its own hotel's instance.
    job_a = ReplyJob.objects.get(inbound=stored[hotel_a.pk])
    job_b = ReplyJob.objects.get(inbound=stored[hotel_b.pk])
    assert replies.reply_job_process(job_id=job_a.pk).result == "done"
    settings.GREEN_API_URL = fake_green_b.url
    assert replies.reply_job_process(job_id=job_b.pk).result == "done"
    assert len(fake_green.sent_messages()) == len(fake_green_b.sent_messages()) == 1
    outbound = Message.objects.filter(direction="out").values_list("hotel_id", flat=True)
    assert sorted(outbound) == sorted([hotel_a.pk, hotel_b.pk])


def test_the_database_key_is_per_hotel(hotels: tuple[Hotel, Hotel]) -> None:
    from django.db import IntegrityError, transaction

    hotel_a, hotel_b = hotels
    _outbound(hotel_a, id_message="KEY")
    _outbound(hotel_b, id_message="KEY")  # another hotel: allowed
    with pytest.raises(IntegrityError), transaction.atomic():
        _outbound(hotel_a, id_message="KEY")  # the same hotel and direction: refused


# --- statuses ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("provider_status", ["failed", "delivered", "read"])
def test_a_status_from_another_hotels_instance_changes_nothing_of_this_hotel(
    hotels: tuple[Hotel, Hotel], provider_status: str
) -> None:
    hotel_a, hotel_b = hotels
    message = _outbound(hotel_a, id_message="A-OUT-1", status="sent")
    before = Message.objects.filter(pk=message.pk).values().get()

    result = _from(B, payloads.outgoing_status(id_message="A-OUT-1", status=provider_status))

    assert result.action == "status_deferred"  # for hotel B, which has no such message (yet)
    assert Message.objects.filter(pk=message.pk).values().get() == before
    [deferred] = DeferredStatus.objects.all()
    assert (deferred.hotel_id, deferred.id_message, deferred.status) == (
        hotel_b.pk,
        "A-OUT-1",
        provider_status,
    )
    # Applying hotel A's deferred statuses for that id finds none of B's.
    assert statuses.deferred_statuses_apply(hotel_id=hotel_a.pk, id_message="A-OUT-1") == 0
    assert Message.objects.filter(pk=message.pk).values().get() == before
    assert DeferredStatus.objects.count() == 1


def test_a_status_moves_only_the_reporting_hotels_message_of_a_shared_id(hotels: tuple[Hotel, Hotel]) -> None:
    hotel_a, hotel_b = hotels
    mine = _outbound(hotel_a, id_message="SHARED", status="accepted")
    theirs = _outbound(hotel_b, id_message="SHARED", status="accepted")

    assert _from(B, payloads.outgoing_status(id_message="SHARED", status="failed")).action == "status_updated"
    assert _from(A, payloads.outgoing_status(id_message="SHARED", status="read")).action == "status_updated"

    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.status, mine.failed_at) == ("read", None)
    assert (theirs.status, theirs.read_at) == ("failed", None)


def test_a_deferred_status_is_applied_to_its_own_hotels_message_only(hotels: tuple[Hotel, Hotel]) -> None:
    hotel_a, hotel_b = hotels
    assert (
        _from(B, payloads.outgoing_status(id_message="LATE", status="delivered")).action == "status_deferred"
    )
    mine = _outbound(hotel_a, id_message="LATE", status="accepted")  # A's id, known first
    assert statuses.deferred_statuses_apply(hotel_id=hotel_a.pk, id_message="LATE") == 0
    theirs = _outbound(hotel_b, id_message="LATE", status="accepted")  # B's message gets the id
    assert statuses.deferred_statuses_apply(hotel_id=hotel_b.pk, id_message="LATE") == 1
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.status, theirs.status) == ("accepted", "delivered")
    assert not DeferredStatus.objects.exists()


# --- journal (outgoingAPIMessageReceived) and reconciliation ---------------------------------------
def _in_doubt(hotel: Hotel, text: str = "Hi") -> Message:
    outbound = _outbound(hotel, id_message=None, status="pending", text=text)
    ReplyJobFactory.create(
        inbound__conversation=outbound.conversation,
        outbound=outbound,
        reply_text=text,
        send_started_at=timezone.now(),
    )
    return outbound


def test_the_journal_of_another_hotels_instance_adopts_nothing(hotels: tuple[Hotel, Hotel]) -> None:
    hotel_a, _ = hotels
    in_doubt = _in_doubt(hotel_a)
    body = payloads.outgoing_api_message(id_message="J-1", text="Hi")

    assert _from(B, body).action == "journal_unmatched"
    in_doubt.refresh_from_db()
    assert in_doubt.provider_message_id is None
    assert _from(A, body).action == "journal_matched"
    in_doubt.refresh_from_db()
    assert in_doubt.provider_message_id == "J-1"


def test_an_id_another_hotel_holds_is_adopted_by_this_hotels_journal(hotels: tuple[Hotel, Hotel]) -> None:
    hotel_a, hotel_b = hotels
    _outbound(hotel_a, id_message="J-2")
    theirs = _in_doubt(hotel_b)
    assert _from(B, payloads.outgoing_api_message(id_message="J-2", text="Hi")).action == "journal_matched"
    theirs.refresh_from_db()
    assert theirs.provider_message_id == "J-2"


def test_reconciliation_adopts_an_id_only_another_hotel_owns(hotels: tuple[Hotel, Hotel]) -> None:
    hotel_a, hotel_b = hotels
    _outbound(hotel_a, id_message="R-1", text="same text")  # hotel A's; says nothing of B's journal
    outbound = _in_doubt(hotel_b, text="same text")
    job = ReplyJob.objects.select_related("outbound").get(outbound=outbound)
    assert job.send_started_at is not None
    entry = green_api.OutgoingJournalEntry(
        "R-1", payloads.CHAT, "same text", job.send_started_at + timedelta(seconds=1)
    )
    assert replies._adoptable(job, [entry], payloads.CHAT) == "R-1"
    _outbound(hotel_b, id_message="R-1", text="same text")  # now B's own: owned
    assert replies._adoptable(job, [entry], payloads.CHAT) is None


# --- state --------------------------------------------------------------------------------------
def test_a_state_change_touches_only_the_reporting_hotel(hotels: tuple[Hotel, Hotel]) -> None:
    hotel_a, hotel_b = hotels
    assert _from(B, payloads.state_changed("notAuthorized")).action == "state_recorded"
    hotel_a.refresh_from_db()
    hotel_b.refresh_from_db()
    assert (hotel_a.green_api_state, hotel_b.green_api_state) == ("", "notAuthorized")
