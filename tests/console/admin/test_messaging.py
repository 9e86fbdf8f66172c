"""Admin pages never show a hotel's Green API token; editing a hotel keeps it unless replaced."""

from __future__ import annotations

import pytest
from django.test import Client

from messaging.models import Hotel
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
