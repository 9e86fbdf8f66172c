"""Per-hotel webhook tokens: each hotel's token is accepted only for its own instance."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from messaging.models import Hotel, Message
from messaging.services import webhook_auth
from messaging.services.hotels import hotel_webhook_token_rotate
from messaging.services.webhook_auth import webhook_token_digest
from messaging.testing import reset_webhook_credentials
from reliability.models import AuditEntry, DeadLetter
from tests.factories import ConversationFactory, HotelFactory, MessageFactory
from tests.messaging import payloads

pytestmark = pytest.mark.django_db

A_INSTANCE, B_INSTANCE = "1101000001", "1101000002"
A_TOKEN, B_TOKEN = "a" * 43, "b" * 43
LEGACY = "/webhooks/green-api/"


def hotel_url(instance: str) -> str:
    return f"/webhooks/green-api/{instance}/"


def client(token: str) -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return c


@pytest.fixture
def hotels_with_tokens(settings) -> tuple[Hotel, Hotel]:
    settings.GREEN_API_WEBHOOK_TOKEN = ""  # the multi-hotel default: no global token
    a = HotelFactory.create(
        name="A", green_api_instance_id=A_INSTANCE, webhook_token_hash=webhook_token_digest(A_TOKEN)
    )
    b = HotelFactory.create(
        name="B", green_api_instance_id=B_INSTANCE, webhook_token_hash=webhook_token_digest(B_TOKEN)
    )
    return a, b


def status_of(id_message: str, status: str, instance: str) -> dict:
    body = payloads.outgoing_status(id_message=id_message, status=status)
    body["instanceData"]["idInstance"] = int(instance)
    return body


@pytest.mark.parametrize("url", [hotel_url(A_INSTANCE), LEGACY])
def test_hotel_token_is_accepted_for_its_own_instance(hotels_with_tokens, url):
    a, _ = hotels_with_tokens
    body = payloads.incoming_text(id_message="OWN1", id_instance=int(A_INSTANCE))

    resp = client(A_TOKEN).post(url, body, format="json")

    assert resp.status_code == 200, resp.content
    assert resp.json() == {"status": "stored"}
    assert Message.objects.get(provider_message_id="OWN1").conversation.hotel == a


@pytest.mark.parametrize("url", [hotel_url(A_INSTANCE), LEGACY, hotel_url(B_INSTANCE)])
def test_token_of_hotel_a_with_hotel_b_instance_is_refused_and_recorded(hotels_with_tokens, url):
    a, b = hotels_with_tokens
    outbound = MessageFactory.create(
        conversation=ConversationFactory.create(guest__hotel=b),
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.ACCEPTED,
        provider_message_id="B-OUT-1",
    )
    audits_before = AuditEntry.objects.count()

    guest_msg = client(A_TOKEN).post(
        url, payloads.incoming_text(id_message="X1", id_instance=int(B_INSTANCE)), format="json"
    )
    status_msg = client(A_TOKEN).post(url, status_of("B-OUT-1", "failed", B_INSTANCE), format="json")

    # Refused exactly like a wrong token...
    wrong = client("not-a-token").post(url, payloads.incoming_text(id_message="X2"), format="json")
    for resp in (guest_msg, status_msg):
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == wrong.json()["error"]["code"]
        assert resp["WWW-Authenticate"] == wrong["WWW-Authenticate"]
    # ...nothing stored, B's message untouched...
    assert not Message.objects.filter(provider_message_id__in=["X1", "X2"]).exists()
    assert DeadLetter.objects.count() == 0
    outbound.refresh_from_db()
    assert outbound.status == Message.Status.ACCEPTED
    # ...and one audit row for staff (bounded per sender), naming hotel A, never the token.
    [entry] = AuditEntry.objects.order_by("-pk")[: AuditEntry.objects.count() - audits_before]
    assert (entry.action, entry.via, entry.tenant) == ("webhook.refused", "system", str(a.pk))
    assert entry.details["claimed_instance"] == B_INSTANCE
    assert entry.details["token_instance"] == A_INSTANCE
    assert A_TOKEN not in str(entry.details) + entry.reason


def test_refusals_are_recorded_again_after_the_interval(hotels_with_tokens, settings):
    settings.WEBHOOK_REFUSAL_AUDIT_INTERVAL = 0
    for i in range(3):
        body = payloads.incoming_text(id_message=f"R{i}", id_instance=int(B_INSTANCE))
        assert client(A_TOKEN).post(LEGACY, body, format="json").status_code == 401
    assert AuditEntry.objects.filter(action="webhook.refused").count() == 3


def test_hotel_b_token_still_works_beside_a_refusal(hotels_with_tokens):
    body = payloads.incoming_text(id_message="B1", id_instance=int(B_INSTANCE))
    assert client(A_TOKEN).post(hotel_url(B_INSTANCE), body, format="json").status_code == 401
    assert client(B_TOKEN).post(hotel_url(B_INSTANCE), body, format="json").json() == {"status": "stored"}


def test_previous_token_is_accepted_within_grace_and_refused_after(hotels_with_tokens):
    a, _ = hotels_with_tokens
    issued = hotel_webhook_token_rotate(hotel=a, grace_hours=24, via="command")
    old, new = client(A_TOKEN), client(issued.webhook_token)
    url = hotel_url(A_INSTANCE)

    assert old.post(url, payloads.incoming_text(id_message="G1"), format="json").status_code == 200
    assert new.post(url, payloads.incoming_text(id_message="G2"), format="json").status_code == 200

    # The grace period ends (seen by a process that has not cached the old token).
    Hotel.objects.filter(pk=a.pk).update(
        webhook_token_previous_expires_at=timezone.now() - timedelta(seconds=1)
    )
    reset_webhook_credentials()

    assert old.post(url, payloads.incoming_text(id_message="G3"), format="json").status_code == 401
    assert new.post(url, payloads.incoming_text(id_message="G4"), format="json").status_code == 200
    assert set(Message.objects.values_list("provider_message_id", flat=True)) == {"G1", "G2", "G4"}


def test_cached_previous_token_ends_at_its_deadline(hotels_with_tokens, monkeypatch):
    a, _ = hotels_with_tokens
    issued = hotel_webhook_token_rotate(hotel=a, grace_hours=1, via="command")
    url = hotel_url(A_INSTANCE)
    assert (
        client(A_TOKEN).post(url, payloads.incoming_text(id_message="C1"), format="json").status_code == 200
    )

    # An hour later (the cached entry knows the deadline; the database agrees when re-read).
    real_time = webhook_auth.time.time
    monkeypatch.setattr(webhook_auth.time, "time", lambda: real_time() + 3601)
    Hotel.objects.filter(pk=a.pk).update(
        webhook_token_previous_expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert (
        client(A_TOKEN).post(url, payloads.incoming_text(id_message="C2"), format="json").status_code == 401
    )
    assert issued.webhook_token != A_TOKEN


def test_rotation_with_no_grace_revokes_the_old_token(hotels_with_tokens):
    a, _ = hotels_with_tokens
    hotel_webhook_token_rotate(hotel=a, grace_hours=0, via="command")
    resp = client(A_TOKEN).post(hotel_url(A_INSTANCE), payloads.incoming_text(id_message="N1"), format="json")
    assert resp.status_code == 401


def test_a_token_issued_by_another_process_works_at_once(hotels_with_tokens):
    a, _ = hotels_with_tokens
    url = hotel_url(A_INSTANCE)
    assert (
        client(A_TOKEN).post(url, payloads.incoming_text(id_message="P1"), format="json").status_code == 200
    )
    fresh = "f" * 43
    Hotel.objects.filter(pk=a.pk).update(webhook_token_hash=webhook_token_digest(fresh))  # another process

    assert client(fresh).post(url, payloads.incoming_text(id_message="P2"), format="json").status_code == 200


def test_a_cached_token_costs_no_credential_query(hotels_with_tokens):
    url = hotel_url(A_INSTANCE)
    assert (
        client(A_TOKEN).post(url, payloads.incoming_text(id_message="Q1"), format="json").status_code == 200
    )
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        resp = client(A_TOKEN).post(url, payloads.incoming_text(id_message="Q2"), format="json")
    assert resp.status_code == 200
    assert not [q for q in queries.captured_queries if '"webhook_token_hash" =' in q["sql"]]
    assert queries.captured_queries  # the intake's own statements were captured


def test_legacy_url_with_global_token_accepts_every_instance(hotels_with_tokens, settings):
    settings.GREEN_API_WEBHOOK_TOKEN = "the-global-token"
    for instance in (A_INSTANCE, B_INSTANCE):
        body = payloads.incoming_text(id_message=f"GL{instance}", id_instance=int(instance))
        assert client("the-global-token").post(LEGACY, body, format="json").json() == {"status": "stored"}
    # Hotels' own tokens keep working on the legacy URL, matched to their instance.
    body = payloads.incoming_text(id_message="GLA", id_instance=int(A_INSTANCE))
    assert client(A_TOKEN).post(LEGACY, body, format="json").status_code == 200
    # The global token opens only the legacy URL.
    body = payloads.incoming_text(id_message="GLX", id_instance=int(A_INSTANCE))
    assert client("the-global-token").post(hotel_url(A_INSTANCE), body, format="json").status_code == 401


def test_legacy_url_without_global_token_refuses_the_old_global_value(hotels_with_tokens):
    body = payloads.incoming_text(id_message="NG1", id_instance=int(A_INSTANCE))
    for token in ("dev-webhook-token", "test-webhook-token", ""):
        assert client(token).post(LEGACY, body, format="json").status_code == 401
    assert not Message.objects.exists()


def test_unreadable_body_with_a_valid_token_is_quarantined_for_its_hotel(hotels_with_tokens):
    resp = client(A_TOKEN).post(hotel_url(A_INSTANCE), b"{not json", content_type="application/json")
    assert resp.status_code == 200
    assert resp.json() == {"status": "quarantined"}
