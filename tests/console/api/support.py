"""What the console API tests share: users of two hotels, operations, letters (the fixtures ``api_world``
and ``fresh_throttle_counts``, which tests/console/api/conftest.py hands to the folder), clients."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from messaging.permissions import HOTEL_STAFF_GROUP, OPERATIONS_GROUP
from reliability.models import DeadLetter
from tests.console.admin_world import RecordingHandler
from tests.factories import HotelFactory


@dataclass
class World:
    hotel_a: Any
    hotel_b: Any
    staff_a: User
    staff_b: User
    ops: User
    letter_a: DeadLetter
    letter_b: DeadLetter
    quarantine_a: DeadLetter
    quarantine_b: DeadLetter


def hotel_staff_group() -> Group:
    """The group migration messaging 0011 creates (a missing group fails the test loudly)."""
    return Group.objects.get(name=HOTEL_STAFF_GROUP)


def _user(name: str, *, staff: bool = True, ops: bool = False) -> User:
    """Hotel staff hold the "hotel staff" group's permissions; operations hold every permission."""
    user = User.objects.create_user(name, f"{name}@example.com", "pw", is_staff=staff)
    if ops:
        group, _ = Group.objects.get_or_create(name=OPERATIONS_GROUP)
        user.groups.add(group)
        user.user_permissions.set(Permission.objects.all())
    else:
        user.groups.add(hotel_staff_group())
    return User.objects.get(pk=user.pk)  # fresh permission cache


def letter(tenant: str, *, kind: str = DeadLetter.Kind.REPLY_SEND, **fields: Any) -> DeadLetter:
    defaults: dict[str, Any] = {
        "subject": f"reply job for {tenant}",
        "reason_code": "attempts_exhausted",
        "reason": "Green API answered 503 six times",
        "category": DeadLetter.Category.PROVIDER_5XX,
        "dependency": "green_api",
        "status": DeadLetter.Status.PENDING,
    }
    if kind == DeadLetter.Kind.WEBHOOK_QUARANTINE:
        defaults.update(
            subject="1101000001",
            reason_code="not_json",
            reason="body is not JSON",
            category=DeadLetter.Category.VALIDATION,
            dependency="",
            raw="{not json",
            raw_size=9,
        )
    defaults.update(fields)
    return DeadLetter.objects.create(kind=kind, tenant=tenant, **defaults)


@pytest.fixture(autouse=True)
def fresh_throttle_counts() -> Iterator[None]:
    """Throttle counts live in the default cache (locmem, or Redis with services): start clean."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api_world(db: Any) -> World:
    hotel_a = HotelFactory.create(name="Hotel A", green_api_instance_id="1101000001")
    hotel_b = HotelFactory.create(name="Hotel B", green_api_instance_id="1101000002")
    staff_a, staff_b, ops = _user("alice"), _user("bob"), _user("olga", ops=True)
    hotel_a.staff.add(staff_a)
    hotel_b.staff.add(staff_b)
    return World(
        hotel_a=hotel_a,
        hotel_b=hotel_b,
        staff_a=staff_a,
        staff_b=staff_b,
        ops=ops,
        letter_a=letter(str(hotel_a.pk)),
        letter_b=letter(str(hotel_b.pk)),
        quarantine_a=letter(str(hotel_a.pk), kind=DeadLetter.Kind.WEBHOOK_QUARANTINE),
        quarantine_b=letter(str(hotel_b.pk), kind=DeadLetter.Kind.WEBHOOK_QUARANTINE),
    )


def client_for(user: User | None) -> APIClient:
    """A client authenticated with the user's API token (none for ``None``)."""
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


__all__ = [
    "RecordingHandler",
    "World",
    "api_world",
    "client_for",
    "fresh_throttle_counts",
    "hotel_staff_group",
    "letter",
]
