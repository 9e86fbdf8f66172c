"""Demo data for ``make run``: one hotel wired to the fake Green API (with its webhook token), an admin."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from messaging.models import Hotel
from messaging.services.webhook_auth import webhook_token_digest

DEMO_HOTEL = {
    "name": "Seaside Inn",
    "check_in": "from 15:00",
    "check_out": "until 11:00",
    "wifi": 'network "Seaside-Guest", password "sunny2026"',
    "breakfast": "07:00-10:30 in the garden room",
    "address": "1 Beach Road, Porto",
    "parking": "free on-site parking, 20 spaces",
    "staff_contact": "reception, dial 9 or +351 900 000 000",
}


@dataclass(frozen=True, slots=True)
class SeedResult:
    hotel: Hotel
    hotel_created: bool
    admin_created: bool


def demo_seed(*, admin_username: str, admin_password: str, admin_email: str = "") -> SeedResult:
    """Idempotent: creates what is missing, never overwrites staff edits or an existing password."""
    with transaction.atomic():
        hotel, hotel_created = Hotel.objects.get_or_create(
            green_api_instance_id=settings.GREEN_API_ID_INSTANCE,
            defaults={**DEMO_HOTEL, "green_api_token": settings.GREEN_API_TOKEN},
        )
        # The fake Green API pushes with FAKE_GREEN_API_WEBHOOK_TOKEN (a public development value):
        # it becomes the demo hotel's webhook token unless the hotel already has one (a rotated
        # token is kept; `hotel_connect` then pushes the new one to the fake).
        demo_token = settings.FAKE_GREEN_API_WEBHOOK_TOKEN
        if demo_token and not hotel.webhook_token_hash:
            hotel.webhook_token_hash = webhook_token_digest(demo_token)
            hotel.webhook_token_issued_at = timezone.now()
            hotel.save(update_fields=["webhook_token_hash", "webhook_token_issued_at", "updated_at"])
        user_model = get_user_model()
        admin_created = False
        if not user_model.objects.filter(username=admin_username).exists():
            user_model.objects.create_superuser(
                username=admin_username, email=admin_email, password=admin_password
            )
            admin_created = True
    return SeedResult(hotel=hotel, hotel_created=hotel_created, admin_created=admin_created)
