"""POST /webhooks/green-api/: auth, validation, idempotent intake, statuses."""

from __future__ import annotations

import pytest
from django.db import OperationalError

from messaging.models import Guest, Message, ReplyJob
from tests.factories import ConversationFactory, HotelFactory, MessageFactory
from tests.messaging import payloads

URL = "/webhooks/green-api/"
pytestmark = pytest.mark.django_db


def test_incoming_text_stores_message_and_reply_job_and_enqueues_on_commit(
    webhook_client, hotel, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        resp = webhook_client.post(URL, payloads.incoming_text(id_message="M1", text="Wifi?"), format="json")
    assert resp.status_code == 200
    assert resp.json() == {"status": "stored"}
    message = Message.objects.get(provider_message_id="M1")
    assert (message.direction, message.text, message.status) == ("in", "Wifi?", "received")
    assert message.conversation.guest.chat_id == "79001234568@c.us"
    assert ReplyJob.objects.get(inbound=message).status == ReplyJob.Status.PENDING
    assert len(callbacks) == 1


def test_redelivered_id_message_is_a_noop(webhook_client, hotel, django_capture_on_commit_callbacks):
    body = payloads.incoming_text(id_message="DUP")
    assert webhook_client.post(URL, body, format="json").status_code == 200
    with django_capture_on_commit_callbacks() as callbacks:
        again = webhook_client.post(URL, body, format="json")
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate"}
    assert Message.objects.filter(provider_message_id="DUP").count() == 1
    assert ReplyJob.objects.count() == 1
    assert callbacks == []


def test_same_guest_reuses_guest_and_conversation(webhook_client, hotel):
    webhook_client.post(URL, payloads.incoming_text(id_message="A"), format="json")
    webhook_client.post(URL, payloads.incoming_text(id_message="B", sender_name="Ana M."), format="json")
    guest = Guest.objects.get()
    assert guest.display_name == "Ana M."
    assert guest.conversations.count() == 1
    assert guest.conversations.get().messages.count() == 2


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong", "Basic dev-webhook-token", "Bearer", "dev-webhook-token"]
)
def test_bad_or_missing_token_is_401_with_envelope(hotel, header):
    from rest_framework.test import APIClient

    client = APIClient()
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)
    resp = client.post(URL, payloads.incoming_text(id_message="X"), format="json")
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "authentication_failed"
    assert resp["WWW-Authenticate"].startswith("Bearer")
    assert not Message.objects.exists()


def test_malformed_json_is_quarantined_with_200(webhook_client, hotel):
    from reliability.models import DeadLetter

    resp = webhook_client.post(URL, data="{not json", content_type="application/json")
    assert resp.status_code == 200
    assert resp.json() == {"status": "quarantined"}
    letter = DeadLetter.objects.get()
    assert (letter.reason_code, letter.raw) == ("not_json", "{not json")


def test_missing_fields_are_quarantined_naming_them(webhook_client, hotel):
    from reliability.models import DeadLetter

    body = payloads.incoming_text(id_message="X")
    del body["senderData"]
    resp = webhook_client.post(URL, body, format="json")
    assert resp.status_code == 200
    assert resp.json() == {"status": "quarantined"}
    letter = DeadLetter.objects.get()
    assert letter.reason_code == "missing"
    assert "senderData.chatId" in letter.reason
    assert letter.subject == str(payloads.INSTANCE)
    assert not Message.objects.exists()


def test_unknown_instance_is_quarantined_with_200(webhook_client, hotel):
    from reliability.models import DeadLetter

    resp = webhook_client.post(URL, payloads.incoming_text(id_message="X", id_instance=999), format="json")
    assert resp.status_code == 200
    assert resp.json() == {"status": "quarantined"}
    letter = DeadLetter.objects.get()
    assert (letter.reason_code, letter.subject) == ("unknown_instance", "999")
    assert not Message.objects.exists()


def test_other_types_are_ignored_with_200(webhook_client):
    resp = webhook_client.post(URL, {"typeWebhook": "incomingCall", "timestamp": 1}, format="json")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ignored"}


def test_group_chat_messages_are_not_answered(webhook_client, hotel):
    body = payloads.incoming_text(id_message="G", chat_id="120363043968066561@g.us")
    assert webhook_client.post(URL, body, format="json").json() == {"status": "ignored_group_chat"}
    assert not Message.objects.exists()


def _outbound(provider_id: str, status: str = Message.Status.ACCEPTED) -> Message:
    return MessageFactory.create(
        conversation=ConversationFactory.create(guest__hotel=HotelFactory.create()),
        direction=Message.Direction.OUTBOUND,
        provider_message_id=provider_id,
        status=status,
    )


def test_statuses_move_forward_and_never_back(webhook_client):
    message = _outbound("OUT1")
    for status, expected in [("sent", "sent"), ("read", "read"), ("delivered", "read")]:
        webhook_client.post(URL, payloads.outgoing_status(id_message="OUT1", status=status), format="json")
        message.refresh_from_db()
        assert message.status == expected
    assert message.sent_at is not None
    assert message.read_at is not None
    assert message.delivered_at is None


def test_failed_status_records_the_reason(webhook_client):
    message = _outbound("OUT2")
    body = payloads.outgoing_status(id_message="OUT2", status="noAccount", description="SWE004: 1000")
    assert webhook_client.post(URL, body, format="json").json() == {"status": "status_updated"}
    message.refresh_from_db()
    assert message.status == "failed"
    assert message.status_detail == "noAccount: SWE004: 1000"


def test_status_before_the_id_is_known_is_deferred_then_applied(webhook_client, hotel):
    from messaging.models import DeferredStatus

    for status in ("sent", "delivered"):
        resp = webhook_client.post(
            URL, payloads.outgoing_status(id_message="EARLY", status=status), format="json"
        )
        assert resp.json() == {"status": "status_deferred"}
    assert DeferredStatus.objects.filter(id_message="EARLY").count() == 2
    outbound = _send_in_doubt("Hello")
    body = payloads.outgoing_api_message(id_message="EARLY", text="Hello")
    assert webhook_client.post(URL, body, format="json").json() == {"status": "journal_matched"}
    outbound.refresh_from_db()
    assert outbound.status == Message.Status.DELIVERED
    assert outbound.sent_at is not None
    assert not DeferredStatus.objects.exists()


def test_deferred_statuses_nobody_claims_are_purged_after_two_days(webhook_client, hotel):
    from datetime import timedelta

    from django.utils import timezone

    from messaging.models import DeferredStatus
    from messaging.services.retention import DEFERRED_TABLE
    from reliability import retention

    webhook_client.post(URL, payloads.outgoing_status(id_message="PHONE", status="sent"), format="json")
    in_a_day = retention.purge(tables=[DEFERRED_TABLE], now=timezone.now() + timedelta(days=1))
    assert in_a_day.total == 0
    assert retention.purge(tables=[DEFERRED_TABLE], now=timezone.now() + timedelta(days=3)).total == 1
    assert not DeferredStatus.objects.exists()


def test_state_change_is_recorded_on_the_hotel(webhook_client, hotel):
    webhook_client.post(URL, payloads.state_changed("yellowCard"), format="json")
    hotel.refresh_from_db()
    assert hotel.green_api_state == "yellowCard"
    assert hotel.green_api_state_changed_at is not None


def test_database_down_answers_503_so_green_api_redelivers(webhook_client, hotel, monkeypatch):
    def boom(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr("messaging.api.views.notification_ingest", boom)
    resp = webhook_client.post(URL, payloads.incoming_text(id_message="DB"), format="json")
    assert resp.status_code == 503
    assert resp["Retry-After"] == "30"
    assert resp.json()["error"]["code"] == "database_unavailable"


def test_journal_webhook_proves_a_send_in_doubt(webhook_client):
    outbound = _send_in_doubt("Check-out is until 11:00.")
    body = payloads.outgoing_api_message(id_message="SENT1", text="Check-out is until 11:00.")
    assert webhook_client.post(URL, body, format="json").json() == {"status": "journal_matched"}
    outbound.refresh_from_db()
    assert outbound.provider_message_id == "SENT1"
    assert webhook_client.post(URL, body, format="json").json() == {"status": "journal_known"}
    other = payloads.outgoing_api_message(id_message="SENT2", text="something else")
    assert webhook_client.post(URL, other, format="json").json() == {"status": "journal_unmatched"}


def test_a_journal_entry_of_a_recorded_send_is_one_statement(webhook_client, django_assert_num_queries):
    """The common case (the send's confirm recorded the idMessage first): the hotel and the known
    check in one plain statement, no hotel row through the ORM."""
    from messaging.notifications import parse_notification
    from messaging.services.intake import notification_ingest

    outbound = _send_in_doubt("Breakfast is at 7.")
    Message.objects.filter(pk=outbound.pk).update(provider_message_id="SENT3")
    known = parse_notification(payloads.outgoing_api_message(id_message="SENT3", text="Breakfast is at 7."))
    with django_assert_num_queries(1):
        assert notification_ingest(notification=known).action == "journal_known"
    elsewhere = parse_notification(
        {**payloads.outgoing_api_message(id_message="SENT3", text="x"), "instanceData": {"idInstance": 999}}
    )
    assert notification_ingest(notification=elsewhere).action == "quarantined"


def test_a_journal_entry_that_proves_a_send_is_three_statements():
    """The hotel and known check, the adopting UPDATE (the send in doubt found inside it), the
    deferred statuses' read after its commit: no separate read of the job, no BEGIN/COMMIT."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from messaging.notifications import parse_notification
    from messaging.services.intake import notification_ingest

    outbound = _send_in_doubt("Breakfast is at 7.")
    proof = parse_notification(payloads.outgoing_api_message(id_message="SENT4", text="Breakfast is at 7."))
    with CaptureQueriesContext(connection) as captured:
        result = notification_ingest(notification=proof)
    assert (result.action, result.message_id) == ("journal_matched", outbound.pk)
    savepoints = ("SAVEPOINT", "RELEASE")  # the test's transaction; in autocommit there is none
    statements = [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(savepoints)]
    assert len(statements) == 3, statements
    assert statements[1].startswith("UPDATE")
    outbound.refresh_from_db()
    assert outbound.provider_message_id == "SENT4"


def _send_in_doubt(text: str) -> Message:
    """An outbound reply whose send left but whose idMessage we never got back."""
    from django.utils import timezone

    from tests.factories import ReplyJobFactory

    conversation = ConversationFactory.create(
        guest__hotel=HotelFactory.create(), guest__chat_id="79001234568@c.us"
    )
    outbound = MessageFactory.create(
        conversation=conversation,
        direction=Message.Direction.OUTBOUND,
        provider_message_id=None,
        status=Message.Status.PENDING,
        text=text,
    )
    ReplyJobFactory.create(
        inbound__conversation=conversation, outbound=outbound, reply_text=text, send_started_at=timezone.now()
    )
    return outbound
