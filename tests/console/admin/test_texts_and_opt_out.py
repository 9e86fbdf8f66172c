"""The hotel's own texts in admin (validated placeholders, hotel-scoped) and clearing a guest's
opt-out (the hotel staff group's action, audited)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from messaging.models import Guest, HotelText
from messaging.permissions import HOTEL_STAFF_GROUP
from reliability.models import AuditEntry
from tests.factories import GuestFactory, HotelFactory

pytestmark = pytest.mark.django_db
ADD = "/admin/messaging/hoteltext/add/"


@pytest.fixture
def receptionist() -> tuple[Client, object, object]:
    """A member of the hotel staff group (the permissions migration 0016 gave it) of one hotel."""
    mine = HotelFactory.create(name="Mine", green_api_instance_id="1101000031")
    theirs = HotelFactory.create(name="Theirs", green_api_instance_id="1101000032")
    user = User.objects.create_user("rita", "rita@example.com", "pw", is_staff=True)
    user.groups.add(Group.objects.get(name=HOTEL_STAFF_GROUP))
    mine.staff.add(user)
    client = Client()
    client.force_login(user)
    return client, mine, theirs


def test_staff_write_their_hotels_text_and_see_the_defaults(receptionist) -> None:
    client, mine, _ = receptionist
    page = client.get(ADD)
    assert page.status_code == 200
    assert "You will receive no more messages from us." in page.content.decode()  # the defaults shown
    saved = client.post(
        ADD, {"hotel": mine.pk, "key": "notice_contact", "language": "it", "text": " Chiamate {contact}. "}
    )
    assert saved.status_code == 302
    text = HotelText.objects.get()
    assert (text.hotel, text.key, text.language, text.text) == (
        mine,
        "notice_contact",
        "it",
        "Chiamate {contact}.",
    )


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"key": "notice_contact", "language": "en", "text": "Call us."}, "must keep {contact}"),
        ({"key": "notice", "language": "en", "text": "Hi {guest}"}, "Unknown placeholder {guest}"),
        ({"key": "notice", "language": "xx", "text": "Hi"}, "Select a valid choice"),
    ],
)
def test_a_text_the_bot_could_not_fill_is_refused(receptionist, data, error) -> None:
    client, mine, _ = receptionist
    page = client.post(ADD, {"hotel": mine.pk, **data})
    assert page.status_code == 200
    assert error in page.content.decode()
    assert not HotelText.objects.exists()


def test_staff_cannot_write_another_hotels_text_nor_twice_the_same(receptionist) -> None:
    client, mine, theirs = receptionist
    foreign = client.post(ADD, {"hotel": theirs.pk, "key": "notice", "language": "en", "text": "Hi"})
    assert foreign.status_code == 200
    assert "Select a valid choice" in foreign.content.decode()
    HotelText.objects.create(hotel=mine, key="notice", language="en", text="Hi")
    twice = client.post(ADD, {"hotel": mine.pk, "key": "notice", "language": "en", "text": "Hello"})
    assert "already exists" in twice.content.decode()
    assert HotelText.objects.count() == 1


def test_staff_clear_an_opt_out_from_the_guest_list_audited(receptionist) -> None:
    client, mine, theirs = receptionist
    guest = GuestFactory.create(hotel=mine, opted_out_at=timezone.now())
    foreign = GuestFactory.create(hotel=theirs, opted_out_at=timezone.now())
    listing = client.get("/admin/messaging/guest/?opted_out=yes")
    assert [g.pk for g in listing.context["cl"].result_list] == [guest.pk]
    done = client.post(
        "/admin/messaging/guest/",
        {"action": "clear_opt_out", "_selected_action": [guest.pk, foreign.pk]},
        follow=True,
    )
    assert "1 guest(s) may receive the bot&#x27;s messages again." in done.content.decode()
    assert Guest.objects.get(pk=guest.pk).opted_out_at is None
    assert Guest.objects.get(pk=foreign.pk).opted_out_at is not None  # not theirs: untouched
    entry = AuditEntry.objects.get(action="guest.opt_out_clear")
    assert (entry.actor_name, entry.via, entry.tenant) == ("rita", "admin", str(mine.pk))
