"""Admin: a new hotel's webhook token shown once; rotate and connect actions, permission and scope."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from fakes.green_api import FakeGreenApi
from messaging.models import Hotel
from messaging.services.webhook_auth import webhook_token_digest
from reliability.models import AuditEntry
from tests.factories import HotelFactory

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/messaging/hotel/"


@pytest.fixture(autouse=True)
def _public_url_for_every_test(settings) -> None:
    settings.HOTELBOT_PUBLIC_URL = "https://bot.example.com"


def staff_client(*, hotel: Hotel, perms: tuple[str, ...]) -> Client:
    user = get_user_model().objects.create_user("staff", "s@example.com", "pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="messaging", codename__in=perms)
    )
    hotel.staff.add(user)
    client = Client()
    client.force_login(user)
    return client


def token_on(page: bytes) -> str:
    text = page.decode()
    return text.split("<td><code>")[2].split("</code>")[0]


#: The reception hours inline's management form, with no rows (a hotel open 24/7).
NO_RECEPTION_HOURS = {"reception_hours-TOTAL_FORMS": "0", "reception_hours-INITIAL_FORMS": "0"}


def action(client: Client, name: str, *hotels: Hotel):
    return client.post(CHANGELIST, {"action": name, "_selected_action": [h.pk for h in hotels], "index": 0})


def test_creating_a_hotel_shows_its_webhook_token_once(ops_client):
    resp = ops_client.post(
        "/admin/messaging/hotel/add/",
        {
            "name": "Quay Hotel",
            "green_api_instance_id": "1101000055",
            "green_api_token": "api-token-55",
            **NO_RECEPTION_HOURS,
        },
    )

    assert resp.status_code == 200, resp.content[:2000]
    assert "no-store" in resp["Cache-Control"]
    hotel = Hotel.objects.get(green_api_instance_id="1101000055")
    token = token_on(resp.content)
    assert hotel.webhook_token_hash == webhook_token_digest(token)
    assert b"https://bot.example.com/webhooks/green-api/1101000055/" in resp.content
    # Never again: the change page shows neither the token nor its hash.
    page = ops_client.get(f"/admin/messaging/hotel/{hotel.pk}/change/").content.decode()
    assert token not in page
    assert hotel.webhook_token_hash not in page
    assert AuditEntry.objects.filter(
        action="hotel.webhook_token_rotate", via="admin", tenant=str(hotel.pk)
    ).exists()


def test_rotate_action_shows_the_new_token_and_keeps_the_old_one_for_the_grace_period(ops_client):
    hotel = HotelFactory.create(webhook_token_hash=webhook_token_digest("old-token"))

    resp = action(ops_client, "rotate_webhook_token", hotel)

    assert resp.status_code == 200
    hotel.refresh_from_db()
    assert hotel.webhook_token_hash == webhook_token_digest(token_on(resp.content))
    assert hotel.webhook_token_previous_hash == webhook_token_digest("old-token")
    entry = AuditEntry.objects.get(action="hotel.webhook_token_rotate")
    assert (entry.via, entry.actor_name) == ("admin", "ops")


@pytest.fixture
def fake_instance(settings) -> Iterator[FakeGreenApi]:
    with FakeGreenApi(id_instance="1101000001", api_token="test-token", rate_limits=False) as fake:
        settings.GREEN_API_URL = fake.url
        yield fake


def test_connect_action_pushes_url_and_token(ops_client, fake_instance):
    hotel = HotelFactory.create(webhook_token_hash=webhook_token_digest("old-token"))

    resp = action(ops_client, "connect_green_api", hotel)

    assert resp.status_code == 302
    hotel.refresh_from_db()
    pushed = fake_instance.settings()
    assert pushed["webhookUrl"] == "https://bot.example.com/webhooks/green-api/1101000001/"
    assert webhook_token_digest(pushed["webhookUrlToken"]) == hotel.webhook_token_hash
    assert AuditEntry.objects.filter(action="hotel.connect", via="admin").count() == 1


def test_connect_action_reports_green_api_refusing(ops_client, fake_instance):
    hotel = HotelFactory.create(green_api_token="wrong", webhook_token_hash=webhook_token_digest("old-token"))

    resp = action(ops_client, "connect_green_api", hotel)

    messages = [m.message for m in resp.wsgi_request._messages]
    assert any("refused setSettings" in m for m in messages)
    hotel.refresh_from_db()
    assert hotel.webhook_token_hash == webhook_token_digest("old-token")


@pytest.mark.parametrize("name", ["rotate_webhook_token", "connect_green_api"])
def test_actions_need_change_hotel(name, fake_instance):
    hotel = HotelFactory.create(webhook_token_hash=webhook_token_digest("old-token"))
    client = staff_client(hotel=hotel, perms=("view_hotel",))

    assert name.encode() not in client.get(CHANGELIST).content  # not offered
    action(client, name, hotel)

    hotel.refresh_from_db()
    assert hotel.webhook_token_hash == webhook_token_digest("old-token")
    assert fake_instance.settings()["webhookUrl"] == ""
    assert not AuditEntry.objects.filter(action__startswith="hotel.").exists()


@pytest.mark.parametrize("name", ["rotate_webhook_token", "connect_green_api"])
def test_actions_ignore_another_hotel(name, fake_instance):
    own = HotelFactory.create(webhook_token_hash=webhook_token_digest("own-token"))
    other = HotelFactory.create(
        green_api_instance_id="1101000099", webhook_token_hash=webhook_token_digest("x")
    )
    client = staff_client(hotel=own, perms=("view_hotel", "change_hotel"))

    action(client, name, other)

    other.refresh_from_db()
    assert other.webhook_token_hash == webhook_token_digest("x")
    assert not AuditEntry.objects.filter(action__startswith="hotel.").exists()


def test_own_hotel_staff_with_change_hotel_may_rotate(fake_instance):
    hotel = HotelFactory.create(webhook_token_hash=webhook_token_digest("own-token"))
    client = staff_client(hotel=hotel, perms=("view_hotel", "change_hotel"))

    resp = action(client, "rotate_webhook_token", hotel)

    hotel.refresh_from_db()
    assert hotel.webhook_token_hash == webhook_token_digest(token_on(resp.content))
