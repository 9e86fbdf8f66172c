"""An outbound status is one conditional UPDATE in the common case (messaging/services/statuses.py),
and whatever the current status, the outcome is the rule's: forward only, never out of failed,
failed never after delivered or read; an unknown id is deferred."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from messaging.models import DeferredStatus, Message
from tests.factories import ConversationFactory, HotelFactory, MessageFactory
from tests.messaging import payloads

URL = "/webhooks/green-api/"
ORDER = ["pending", "accepted", "sent", "delivered", "read"]
PROVIDER = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "noAccount": "failed",
}


def _expected(current: str, provider_status: str) -> str:
    """The rule, written out independently of the code under test."""
    new = PROVIDER[provider_status]
    if current == "failed":
        return current
    if new == "failed":
        return current if current in ("delivered", "read") else "failed"
    return new if ORDER.index(new) > ORDER.index(current) else current


@pytest.mark.django_db
@pytest.mark.parametrize("current", [*ORDER, "failed"])
@pytest.mark.parametrize("provider_status", list(PROVIDER))
def test_every_status_from_every_status_follows_the_rule(
    webhook_client: Any, current: str, provider_status: str
) -> None:
    hotel = HotelFactory.create()
    message = MessageFactory.create(
        conversation=ConversationFactory.create(guest__hotel=hotel),
        direction=Message.Direction.OUTBOUND,
        provider_message_id="S1",
        status=current,
    )
    body = payloads.outgoing_status(id_message="S1", status=provider_status, description="SWE004")
    action = webhook_client.post(URL, body, format="json").json()["status"]
    message.refresh_from_db()
    expected = _expected(current, provider_status)
    assert message.status == expected
    assert action == ("status_updated" if expected != current else "status_stale")
    if expected != current:
        stamp = {"sent": "sent_at", "delivered": "delivered_at", "read": "read_at", "failed": "failed_at"}[
            expected
        ]
        assert getattr(message, stamp) is not None
    if expected == "failed" and current != "failed":
        assert message.status_detail == f"{provider_status}: SWE004"


@pytest.mark.django_db(transaction=True)
def test_a_status_that_moves_a_message_is_the_hotel_lookup_and_one_update(webhook_client: Any) -> None:
    hotel = HotelFactory.create()
    MessageFactory.create(
        conversation=ConversationFactory.create(guest__hotel=hotel),
        direction=Message.Direction.OUTBOUND,
        provider_message_id="S2",
        status="accepted",
    )
    webhook_client.post(
        URL, payloads.outgoing_status(id_message="S2", status="sent"), format="json"
    )  # warm-up
    with CaptureQueriesContext(connection) as queries:
        response = webhook_client.post(
            URL, payloads.outgoing_status(id_message="S2", status="delivered"), format="json"
        )
    assert response.json() == {"status": "status_updated"}
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["SELECT", "UPDATE"]


@pytest.mark.django_db
def test_an_unknown_id_is_still_deferred(webhook_client: Any) -> None:
    HotelFactory.create()
    body = payloads.outgoing_status(id_message="NOT-YET", status="delivered")
    assert webhook_client.post(URL, body, format="json").json() == {"status": "status_deferred"}
    assert DeferredStatus.objects.filter(id_message="NOT-YET", status="delivered").exists()
