"""Admin pages never show a hotel's Green API token; editing a hotel keeps it unless replaced."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.test import Client

from messaging.models import Hotel, ReceptionHours
from reliability import egress
from tests.console.admin.test_messaging_hotel_actions import NO_RECEPTION_HOURS
from tests.factories import HotelFactory

pytestmark = pytest.mark.django_db

SECRET = "tok-9f8e7d6c5b4a39281706"


def test_hotel_change_page_never_renders_the_token(ops_client: Client) -> None:
    hotel = HotelFactory.create(green_api_token=SECRET)

    page = ops_client.get(f"/admin/messaging/hotel/{hotel.pk}/change/")

    assert page.status_code == 200
    assert SECRET not in page.content.decode()
    assert 'type="password"' in page.content.decode()


def _form_data(hotel: Hotel, token: str) -> dict[str, str]:
    return {
        "name": hotel.name,
        "address": hotel.address,
        "staff_contact": hotel.staff_contact,
        "check_in": hotel.check_in,
        "check_out": hotel.check_out,
        "wifi": hotel.wifi,
        "breakfast": hotel.breakfast,
        "parking": hotel.parking,
        "extra_facts": hotel.extra_facts,
        "green_api_instance_id": hotel.green_api_instance_id,
        "green_api_token": token,
        **NO_RECEPTION_HOURS,
    }


def test_saving_without_a_token_keeps_the_stored_one_and_a_new_one_replaces_it(ops_client: Client) -> None:
    hotel = HotelFactory.create(green_api_token=SECRET)
    url = f"/admin/messaging/hotel/{hotel.pk}/change/"

    kept = ops_client.post(url, {**_form_data(hotel, ""), "name": "Renamed"})
    hotel.refresh_from_db()
    assert kept.status_code == 302
    assert (hotel.name, hotel.green_api_token) == ("Renamed", SECRET)

    ops_client.post(url, _form_data(hotel, "tok-new"))
    hotel.refresh_from_db()
    assert hotel.green_api_token == "tok-new"


def test_a_new_hotel_needs_a_token(ops_client: Client) -> None:
    data = _form_data(HotelFactory.build(green_api_instance_id="1101999999"), "")

    page = ops_client.post("/admin/messaging/hotel/add/", data)

    assert page.status_code == 200
    assert "A new hotel needs its Green API token." in page.content.decode()
    assert not Hotel.objects.filter(green_api_instance_id="1101999999").exists()


def _hours(*rows: tuple[str, str, str]) -> dict[str, str]:
    data = {"reception_hours-TOTAL_FORMS": str(len(rows)), "reception_hours-INITIAL_FORMS": "0"}
    for i, (weekday, opens, closes) in enumerate(rows):
        data |= {
            f"reception_hours-{i}-weekday": weekday,
            f"reception_hours-{i}-opens": opens,
            f"reception_hours-{i}-closes": closes,
        }
    return data


def test_reception_hours_time_zone_and_target_are_edited_with_the_hotel(ops_client: Client) -> None:
    hotel = HotelFactory.create(green_api_token=SECRET)
    url = f"/admin/messaging/hotel/{hotel.pk}/change/"
    data = {
        **_form_data(hotel, ""),
        **_hours(("0", "07:00", "23:00"), ("4", "22:00", "02:00")),
        "timezone": "Europe/Lisbon",
        "handoff_target_minutes": "20",
        "staff_webhook_url": "https://pms.example.com/hooks/hotelbot",
        "staff_webhook_secret": "sign-me-please",
    }
    assert ops_client.post(url, data).status_code == 302
    hotel.refresh_from_db()
    assert (hotel.timezone, hotel.handoff_target_minutes) == ("Europe/Lisbon", 20)
    assert hotel.staff_webhook_secret == "sign-me-please"
    assert sorted(str(h) for h in hotel.reception_hours.all()) == ["Friday 22:00-02:00", "Monday 07:00-23:00"]
    page = ops_client.get(url).content.decode()
    assert "sign-me-please" not in page  # write-only, like the token
    # Left empty, the secret stays; the box removes it (the hours, not posted, stay as they are).
    assert ops_client.post(url, {**_form_data(hotel, ""), "staff_webhook_secret": ""}).status_code == 302
    hotel.refresh_from_db()
    assert hotel.staff_webhook_secret == "sign-me-please"
    assert (
        ops_client.post(url, {**_form_data(hotel, ""), "staff_webhook_secret_clear": "on"}).status_code == 302
    )
    hotel.refresh_from_db()
    assert hotel.staff_webhook_secret == ""
    assert ReceptionHours.objects.filter(hotel=hotel).count() == 2


def test_reception_hours_and_time_zone_are_validated(ops_client: Client) -> None:
    hotel = HotelFactory.create(green_api_token=SECRET)
    url = f"/admin/messaging/hotel/{hotel.pk}/change/"
    same = ops_client.post(url, {**_form_data(hotel, ""), **_hours(("2", "09:00", "09:00"))})
    assert same.status_code == 200
    assert "for the whole day use 00:00-00:00" in same.content.decode()
    zone = ops_client.post(url, {**_form_data(hotel, ""), "timezone": "Mars/Olympus"})
    assert zone.status_code == 200
    assert "Select a valid choice" in zone.content.decode()
    assert not ReceptionHours.objects.exists()
    # Empty: the defaults (the deployment's zone, 15 minutes).
    assert ops_client.post(url, {**_form_data(hotel, ""), "handoff_target_minutes": ""}).status_code == 302
    hotel.refresh_from_db()
    assert (hotel.timezone, hotel.handoff_target_minutes) == ("UTC", 15)


def test_staff_webhook_events_are_listed_read_only(ops_client: Client) -> None:
    from django.utils import timezone

    from messaging.services import staff_events
    from tests.factories import ConversationFactory

    hotel = HotelFactory.create(staff_webhook_url="https://pms.example.com/hooks")
    conversation = ConversationFactory.create(guest__hotel=hotel, owner="waiting", owner_since=timezone.now())
    staff_events.staff_event_record(conversation=conversation, event="handoff", now=timezone.now())
    page = ops_client.get("/admin/messaging/staffevent/")
    assert page.status_code == 200
    assert "a guest was handed to staff" in page.content.decode()
    assert ops_client.get("/admin/messaging/staffevent/add/").status_code == 403


@pytest.mark.parametrize(
    ("url", "allow_private", "error"),
    [
        ("http://pms.example.com/hooks", False, "The URL must start with https://"),
        ("https://10.0.0.5/hooks", False, "resolves to 10.0.0.5: not a public address"),
        ("https://169.254.169.254/latest/meta-data/", False, "not a public address"),
        ("https://localhost:8443/hooks", False, "not a public address"),
        ("https://private.example.com/hooks", False, "resolves to 192.168.7.7: not a public address"),
        ("http://pms.example.com/hooks", True, "The URL must start with https://"),  # still https
        ("https://pms.example.com/hooks", False, None),
        ("https://10.0.0.5/hooks", True, None),  # STAFF_WEBHOOK_ALLOW_PRIVATE=1
    ],
)
def test_the_staff_webhook_url_is_refused_when_it_could_reach_internal_services(
    ops_client: Client,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    allow_private: bool,
    error: str | None,
) -> None:
    """Without DEBUG: https to public addresses only, unless the deployment allows private ones."""
    settings.STAFF_WEBHOOK_ALLOW_HTTP, settings.STAFF_WEBHOOK_ALLOW_PRIVATE = False, allow_private
    names = {"pms.example.com": ["93.184.215.14"], "private.example.com": ["192.168.7.7"]}
    real = egress.resolve
    monkeypatch.setattr(egress, "resolve", lambda host, port: names.get(host) or real(host, port))
    hotel = HotelFactory.create(green_api_token=SECRET)
    response = ops_client.post(
        f"/admin/messaging/hotel/{hotel.pk}/change/", {**_form_data(hotel, ""), "staff_webhook_url": url}
    )
    hotel.refresh_from_db()
    if error is None:
        assert response.status_code == 302
        assert hotel.staff_webhook_url == url
    else:
        assert response.status_code == 200
        assert error in html.unescape(response.content.decode())
        assert hotel.staff_webhook_url == ""
