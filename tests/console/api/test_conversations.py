"""/api/v1/conversations/: the staff inbox over the API (each endpoint, wrong hotel, bad input)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from messaging.models import Conversation, ConversationNote, Guest, ReplyJob
from reliability.models import AuditEntry
from tests.console.api.support import World, client_for
from tests.console.api.test_views import _envelope
from tests.factories import ConversationFactory, MessageFactory

pytestmark = pytest.mark.django_db

API = "/api/v1/conversations"


def _waiting(hotel: Any, chat: str, minutes: float, owner: str = "waiting") -> Conversation:
    conversation = ConversationFactory.create(guest__hotel=hotel, guest__chat_id=chat)
    MessageFactory.create(conversation=conversation, text=f"Help, {chat[-8:-5]}")
    Conversation.objects.filter(pk=conversation.pk).update(
        owner=owner, owner_reason="guest_asked", owner_since=timezone.now() - timedelta(minutes=minutes)
    )
    conversation.refresh_from_db()
    return conversation


@pytest.fixture
def convs(api_world: World) -> dict[str, Conversation]:
    return {
        "old": _waiting(api_world.hotel_a, "79001230001@c.us", 50),
        "new": _waiting(api_world.hotel_a, "79001230002@c.us", 5),
        "held": _waiting(api_world.hotel_a, "79001230003@c.us", 20, owner="staff"),
        "bot": _waiting(api_world.hotel_a, "79001230004@c.us", 90, owner="bot"),
        "foreign": _waiting(api_world.hotel_b, "79001230005@c.us", 70),
    }


def test_the_list_is_scoped_masked_and_paged_by_cursor(api_world: World, convs) -> None:
    client = client_for(api_world.staff_a)
    body = client.get(f"{API}/").json()
    assert [r["id"] for r in body["results"]] == [convs["old"].pk, convs["held"].pk, convs["new"].pk]
    first = body["results"][0]
    assert first["guest"] == "***0001@c.us"
    assert first["hotel"] == {"id": api_world.hotel_a.pk, "name": "Hotel A"}
    assert (first["owner"], first["owner_reason"], first["overdue"]) == ("waiting", "guest_asked", True)
    assert first["target_seconds"] == 900
    assert first["last_message"] == "Help, 001"

    waiting = client.get(f"{API}/?owner=waiting&page_size=1").json()
    assert [r["id"] for r in waiting["results"]] == [convs["old"].pk]
    following = client.get(waiting["next"]).json()
    assert [r["id"] for r in following["results"]] == [convs["new"].pk]
    assert following["next"] is None

    ops = client_for(api_world.ops).get(f"{API}/?owner=waiting").json()
    assert convs["foreign"].pk in [r["id"] for r in ops["results"]]


def test_a_bad_owner_filter_is_400_field_by_field(api_world: World, convs) -> None:
    error = _envelope(client_for(api_world.staff_a).get(f"{API}/?owner=bot"), 400, "invalid")
    assert "owner" in error["details"]


def test_the_detail_has_the_thread_with_notes(api_world: World, convs) -> None:
    conversation = convs["old"]
    ConversationNote.objects.create(conversation=conversation, author=api_world.staff_a, text="VIP")
    body = client_for(api_world.staff_a).get(f"{API}/{conversation.pk}/").json()
    assert body["id"] == conversation.pk
    assert [(i["kind"], i["who"], i["text"]) for i in body["thread"]] == [
        ("message", "guest", "Help, 001"),
        ("note", "alice", "VIP"),
    ]
    assert body["thread_truncated"] is False


def test_take_and_hand_back_are_audited_via_the_api(api_world: World, convs) -> None:
    client = client_for(api_world.staff_a)
    conversation = convs["old"]
    taken = client.post(f"{API}/{conversation.pk}/take/")
    assert taken.status_code == 200, taken.content
    assert (taken.json()["owner"], taken.json()["owner_user"]) == ("staff", "alice")
    back = client.post(f"{API}/{conversation.pk}/hand-back/").json()
    assert (back["owner"], back["owner_reason"]) == ("bot", "handed_back")
    assert list(AuditEntry.objects.order_by("pk").values_list("action", "via")) == [
        ("conversation.take", "api"),
        ("conversation.hand_back", "api"),
    ]


def test_a_reply_is_queued_once_per_request_key_in_the_body_or_header(api_world: World, convs) -> None:
    client = client_for(api_world.staff_a)
    url = f"{API}/{convs['old'].pk}/reply/"
    first = client.post(url, {"text": "We are on our way.", "request_key": "k-1"}, format="json")
    again = client.post(url, {"text": "We are on our way.", "request_key": "k-1"}, format="json")
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["id"] == again.json()["id"]
    assert (first.json()["kind"], first.json()["status"]) == ("staff", "pending")

    by_header = client.post(
        url, {"text": "Second message"}, format="json", headers={"Idempotency-Key": "h-1"}
    )
    repeat = client.post(url, {"text": "Second message"}, format="json", headers={"Idempotency-Key": "h-1"})
    assert by_header.json()["id"] == repeat.json()["id"]
    assert ReplyJob.objects.filter(kind="staff").count() == 2
    assert AuditEntry.objects.filter(action="conversation.staff_reply", via="api").count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "text"),
        ({"text": "   "}, "text"),
        ({"text": "x" * 20001}, "text"),
        ({"text": "hi", "request_key": "k" * 65}, "request_key"),
    ],
)
def test_bad_replies_are_400_and_queue_nothing(api_world: World, convs, body, field) -> None:
    response = client_for(api_world.staff_a).post(f"{API}/{convs['old'].pk}/reply/", body, format="json")
    error = _envelope(response, 400, "invalid")
    assert field in error["details"]
    assert not ReplyJob.objects.exists()


def test_notes_are_listed_and_added(api_world: World, convs) -> None:
    client = client_for(api_world.staff_a)
    url = f"{API}/{convs['old'].pk}/notes/"
    created = client.post(url, {"text": "Called the guest"}, format="json")
    assert created.status_code == 201
    assert (created.json()["author"], created.json()["text"]) == ("alice", "Called the guest")
    assert [n["text"] for n in client.get(url).json()] == ["Called the guest"]
    _envelope(client.post(url, {"text": ""}, format="json"), 400, "invalid")
    assert AuditEntry.objects.filter(action="conversation.note", via="api").count() == 1


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("get", ""),
        ("post", "take/"),
        ("post", "hand-back/"),
        ("post", "reply/"),
        ("get", "notes/"),
        ("post", "notes/"),
        ("post", "clear-opt-out/"),
    ],
)
def test_another_hotels_conversation_is_404_and_untouched(api_world: World, convs, method, suffix) -> None:
    foreign = convs["foreign"]
    client = client_for(api_world.staff_a)
    response = getattr(client, method)(f"{API}/{foreign.pk}/{suffix}", {"text": "hi"}, format="json")
    _envelope(response, 404, "not_found")
    foreign.refresh_from_db()
    assert foreign.owner == "waiting"
    assert not ReplyJob.objects.exists()
    assert not ConversationNote.objects.exists()
    assert not AuditEntry.objects.exists()


def test_acting_needs_the_answer_permission_reading_the_view_permission(api_world: World, convs) -> None:
    viewer = User.objects.create_user("vic", "v@example.com", "pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    api_world.hotel_a.staff.add(viewer)
    client = client_for(viewer)
    assert client.get(f"{API}/{convs['old'].pk}/").status_code == 200
    _envelope(client.post(f"{API}/{convs['old'].pk}/take/"), 403, "permission_denied")
    nobody = User.objects.create_user("nina", "n@example.com", "pw", is_staff=True)
    _envelope(client_for(nobody).get(f"{API}/"), 403, "permission_denied")
    _envelope(client_for(None).get(f"{API}/"), 401, "not_authenticated")


def test_the_guests_opt_out_is_shown_and_cleared_audited(api_world: World, convs) -> None:
    conversation = convs["old"]
    client = client_for(api_world.staff_a)
    assert client.get(f"{API}/{conversation.pk}/").json()["guest_opted_out_at"] is None
    stopped = timezone.now() - timedelta(hours=1)
    Guest.objects.filter(pk=conversation.guest_id).update(opted_out_at=stopped)
    assert client.get(f"{API}/{conversation.pk}/").json()[
        "guest_opted_out_at"
    ] == stopped.isoformat().replace("+00:00", "Z")

    cleared = client.post(f"{API}/{conversation.pk}/clear-opt-out/")
    assert cleared.status_code == 200, cleared.content
    assert (cleared.json()["id"], cleared.json()["guest_opted_out_at"]) == (conversation.pk, None)
    assert Guest.objects.get(pk=conversation.guest_id).opted_out_at is None
    [entry] = AuditEntry.objects.filter(action="guest.opt_out_clear")
    assert (entry.via, entry.tenant, entry.actor) == ("api", str(api_world.hotel_a.pk), api_world.staff_a)
    assert "0001" in str(entry.details)
    assert "7900123" not in str(entry.details)  # the number masked

    again = client.post(f"{API}/{conversation.pk}/clear-opt-out/")  # nothing to clear: 200, no audit
    assert again.status_code == 200
    assert AuditEntry.objects.filter(action="guest.opt_out_clear").count() == 1


def test_clearing_an_opt_out_needs_its_permission(api_world: World, convs) -> None:
    conversation = convs["old"]
    Guest.objects.filter(pk=conversation.guest_id).update(opted_out_at=timezone.now())
    answerer = User.objects.create_user("ann", "a@example.com", "pw", is_staff=True)
    answerer.user_permissions.add(
        *Permission.objects.filter(codename__in=("view_conversation", "answer_guests"))
    )
    api_world.hotel_a.staff.add(answerer)
    _envelope(client_for(answerer).post(f"{API}/{conversation.pk}/clear-opt-out/"), 403, "permission_denied")
    assert Guest.objects.get(pk=conversation.guest_id).opted_out_at is not None
    assert not AuditEntry.objects.exists()
