"""The staff inbox pages (/admin/inbox/): permissions and hotel scope, masked numbers, a bounded
list query, POST-redirect-GET actions, a double submit queued once, CSRF, the polled partials."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from messaging.models import CannedResponse, Conversation, ConversationNote, ReplyJob
from reliability.models import AuditEntry
from tests.console.api.support import hotel_staff_group
from tests.factories import ConversationFactory, HotelFactory, MessageFactory

pytestmark = pytest.mark.django_db

HTMX_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"


def _staff(name: str, hotel: Any) -> User:
    user = User.objects.create_user(name, f"{name}@example.com", "pw", is_staff=True)
    user.groups.add(hotel_staff_group())
    if hotel is not None:
        hotel.staff.add(user)
    return User.objects.get(pk=user.pk)


def _client(user: User, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def _waiting(hotel: Any, chat: str, *, minutes: float = 5, text: str = "I want a person") -> Conversation:
    conversation = ConversationFactory.create(guest__hotel=hotel, guest__chat_id=chat)
    MessageFactory.create(conversation=conversation, text=text)
    Conversation.objects.filter(pk=conversation.pk).update(
        owner="waiting", owner_reason="guest_asked", owner_since=timezone.now() - timedelta(minutes=minutes)
    )
    conversation.refresh_from_db()
    return conversation


@pytest.fixture
def world() -> dict[str, Any]:
    hotel_a = HotelFactory.create(name="Hotel A", green_api_instance_id="1101000001")
    hotel_b = HotelFactory.create(name="Hotel B", green_api_instance_id="1101000002")
    return {
        "a": hotel_a,
        "b": hotel_b,
        "alice": _staff("alice", hotel_a),
        "bob": _staff("bob", hotel_b),
        "conv_a": _waiting(hotel_a, "79001234567@c.us", minutes=40),
        "conv_b": _waiting(hotel_b, "79007654321@c.us"),
    }


def _url(name: str, conversation: Conversation | None = None) -> str:
    return reverse(f"admin:{name}", args=[conversation.pk] if conversation else [])


# --- who may look ----------------------------------------------------------------------------------
def test_anonymous_users_are_sent_to_the_login_page(world):
    response = Client().get(_url("inbox"))
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_an_expired_session_makes_the_polled_fragment_reload_the_page(world):
    response = Client().get(_url("inbox_rows"), headers={"HX-Request": "true"})
    assert (response.status_code, response["HX-Refresh"]) == (401, "true")


def test_staff_without_the_view_permission_get_403(world):
    nobody = User.objects.create_user("nina", "n@example.com", "pw", is_staff=True)
    world["a"].staff.add(nobody)
    client = _client(nobody)
    for name, conversation in (
        ("inbox", None),
        ("inbox_rows", None),
        ("inbox_conversation", world["conv_a"]),
    ):
        assert client.get(_url(name, conversation)).status_code == 403


def test_the_list_shows_only_the_users_hotels_with_masked_numbers_and_the_target(world):
    response = _client(world["alice"]).get(_url("inbox"))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    assert "***4567@c.us" in html
    assert "79001234567" not in html
    assert "***4321" not in html  # hotel B's guest
    assert "Hotel B" not in html
    assert "40 min" in html
    assert "past target" in html
    assert 'hx-trigger="every 3s"' in html
    assert "/static/console/htmx.min.js" in html
    assert _url("inbox_conversation", world["conv_a"]) in html


def test_the_index_and_the_dashboard_link_the_inbox(world):
    client = _client(world["alice"])
    assert _url("inbox") in client.get(reverse("admin:index")).content.decode()
    assert 'id="dashboard-inbox-link"' in client.get(reverse("admin:reliability_dashboard")).content.decode()


def test_the_list_costs_the_same_queries_for_many_conversations(world):
    client = _client(world["alice"])
    client.get(_url("inbox_rows"))  # warm the session and permission caches

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(_url("inbox_rows")).status_code == 200
        return len(captured)

    few = queries()
    for n in range(12):
        _waiting(world["a"], f"7900555{n:04d}@c.us", minutes=n)
    assert queries() == few
    assert few <= 8


def test_the_list_is_paginated(world, monkeypatch):
    from console.inbox import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    for n in range(3):
        _waiting(world["a"], f"7900666{n:04d}@c.us", minutes=n)
    html = _client(world["alice"]).get(_url("inbox") + "?page=2").content.decode()
    assert "page 2 of 2" in html
    assert "/admin/inbox/rows/?page=2" in html  # the poll keeps the page


def test_another_hotels_conversation_is_404_for_every_inbox_url(world):
    client = _client(world["alice"])
    foreign = world["conv_b"]
    assert client.get(_url("inbox_conversation", foreign)).status_code == 404
    assert client.get(_url("inbox_thread", foreign)).status_code == 404
    for name in ("inbox_reply", "inbox_take", "inbox_hand_back", "inbox_note"):
        data = {"reply-text": "hi", "reply-request_key": "k1", "note-text": "n"}
        assert client.post(_url(name, foreign), data).status_code == 404, name
    foreign.refresh_from_db()
    assert foreign.owner == "waiting"
    assert not ReplyJob.objects.exists()
    assert not ConversationNote.objects.exists()
    assert not AuditEntry.objects.filter(action__startswith="conversation.").exists()


# --- the conversation page and its actions ----------------------------------------------------------
def test_the_conversation_shows_the_thread_canned_responses_and_a_fresh_request_key(world):
    CannedResponse.objects.create(hotel=world["a"], title="Late check-out", text="Until 13:00, free.")
    CannedResponse.objects.create(hotel=world["b"], title="Other hotel's", text="nope")
    client = _client(world["alice"])
    first = client.get(_url("inbox_conversation", world["conv_a"]))
    html = first.content.decode()
    assert "I want a person" in html
    assert "***4567@c.us" in html
    assert "79001234567" not in html
    assert "Late check-out (en)" in html
    assert "Until 13:00, free." in html
    assert "Other hotel" not in html
    assert "/static/console/inbox.js" in html
    second = client.get(_url("inbox_conversation", world["conv_a"]))
    keys = [r.context["reply_form"]["request_key"].value() for r in (first, second)]
    assert keys[0]
    assert keys[0] != keys[1]


def test_a_reply_is_queued_once_for_a_double_submit_audited_and_redirects(world, published):
    client = _client(world["alice"])
    data = {"reply-text": "A colleague will call you in 5 minutes.", "reply-request_key": "form-token-1"}
    first = client.post(_url("inbox_reply", world["conv_a"]), data)
    second = client.post(_url("inbox_reply", world["conv_a"]), data)

    for response in (first, second):
        assert (response.status_code, response["Location"]) == (
            302,
            _url("inbox_conversation", world["conv_a"]),
        )
    job = ReplyJob.objects.get()
    assert (job.kind, job.reply_text, job.request_key) == (
        "staff",
        "A colleague will call you in 5 minutes.",
        "form-token-1",
    )
    assert AuditEntry.objects.filter(action="conversation.staff_reply", via="admin").count() == 1
    world["conv_a"].refresh_from_db()
    assert (world["conv_a"].owner, world["conv_a"].owner_user) == ("staff", world["alice"])
    page = client.get(first["Location"]).content.decode()
    assert "on its way to the guest" in page
    assert 'data-kind="queued"' in page


def test_an_empty_reply_shows_the_form_error_and_queues_nothing(world):
    response = _client(world["alice"]).post(
        _url("inbox_reply", world["conv_a"]), {"reply-text": "  ", "reply-request_key": "k"}
    )
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not ReplyJob.objects.exists()


def test_take_then_hand_back_change_the_owner_and_are_audited(world):
    client = _client(world["alice"])
    conversation = world["conv_a"]
    assert client.post(_url("inbox_take", conversation)).status_code == 302
    conversation.refresh_from_db()
    assert (conversation.owner, conversation.owner_reason) == ("staff", "staff_took")
    assert client.post(_url("inbox_hand_back", conversation)).status_code == 302
    conversation.refresh_from_db()
    assert (conversation.owner, conversation.owner_reason) == ("bot", "handed_back")
    actions = list(AuditEntry.objects.order_by("pk").values_list("action", "via", "tenant"))
    tenant = str(world["a"].pk)
    assert actions == [("conversation.take", "admin", tenant), ("conversation.hand_back", "admin", tenant)]


def test_a_note_is_added_and_shown_as_internal(world):
    client = _client(world["alice"])
    response = client.post(_url("inbox_note", world["conv_a"]), {"note-text": "Guest is a VIP"})
    assert response.status_code == 302
    note = ConversationNote.objects.get()
    assert (note.text, note.author) == ("Guest is a VIP", world["alice"])
    thread = client.get(_url("inbox_thread", world["conv_a"])).content.decode()
    assert "Guest is a VIP" in thread
    assert "never sent to the guest" in thread
    assert not ReplyJob.objects.exists()


def test_actions_need_the_answer_permission_and_get_is_refused(world):
    viewer = User.objects.create_user("vic", "v@example.com", "pw", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    world["a"].staff.add(viewer)
    client = _client(viewer)
    page = client.get(_url("inbox_conversation", world["conv_a"]))
    assert page.status_code == 200
    assert 'id="reply-form"' not in page.content.decode()
    assert client.post(_url("inbox_take", world["conv_a"])).status_code == 403
    assert _client(world["alice"]).get(_url("inbox_take", world["conv_a"])).status_code == 405


def test_posts_need_the_csrf_token(world):
    client = _client(world["alice"], enforce_csrf_checks=True)
    assert client.post(_url("inbox_take", world["conv_a"])).status_code == 403
    world["conv_a"].refresh_from_db()
    assert world["conv_a"].owner == "waiting"


def test_htmx_is_vendored_unchanged_with_its_licence():
    static = Path(settings.BASE_DIR) / "console" / "static" / "console"
    assert hashlib.sha256((static / "htmx.min.js").read_bytes()).hexdigest() == HTMX_SHA256
    assert "Zero-Clause BSD" in (static / "htmx.LICENSE.txt").read_text()
    assert "2.0.11" in (static / "VENDORED.md").read_text()
