"""Migration messaging 0010 (issue 16 part B): every existing message takes its conversation's hotel,
deferred statuses are attributed when there is one hotel (dropped when there are several: they name
no hotel), and the unique key becomes (hotel, direction, idMessage). Run forwards from 0009 on a
database with rows, on SQLite and PostgreSQL; the database is migrated back to the latest after."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE = ("messaging", "0009_hotel_token_encrypted")
AFTER = ("messaging", "0010_message_hotel_dedup")


def _migrate(*targets: tuple[str, str]) -> Any:
    """Migrate to ``targets``; the historical models there."""
    executor = MigrationExecutor(connection)
    executor.migrate(list(targets))
    return MigrationExecutor(connection).loader.project_state(list(targets)).apps


@pytest.fixture
def before() -> Iterator[Any]:
    apps = _migrate(BEFORE)
    yield apps
    _migrate(*MigrationExecutor(connection).loader.graph.leaf_nodes())


def _history(apps: Any, *, hotels: int) -> list[tuple[int, int]]:
    """``hotels`` hotels with a guest, a conversation and an inbound and an outbound message each;
    one deferred status. (message id, its conversation's hotel id) of every message."""
    Hotel, Guest, Conversation = (apps.get_model("messaging", m) for m in ("Hotel", "Guest", "Conversation"))
    Message, DeferredStatus = (
        apps.get_model("messaging", "Message"),
        apps.get_model("messaging", "DeferredStatus"),
    )
    now = timezone.now()
    rows = []
    for n in range(hotels):
        hotel = Hotel.objects.create(
            name=f"Hotel {n}", green_api_instance_id=f"110100010{n}", green_api_token="t"
        )
        guest = Guest.objects.create(hotel=hotel, chat_id="79001234567@c.us")
        conversation = Conversation.objects.create(hotel=hotel, guest=guest, last_message_at=now)
        for direction in ("in", "out"):
            message = Message.objects.create(
                conversation=conversation, direction=direction, provider_message_id=f"M{n}", status="received"
            )
            rows.append((message.pk, hotel.pk))
    DeferredStatus.objects.create(id_message="EARLY", status="delivered", provider_timestamp=now)
    return rows


@pytest.mark.parametrize("hotels", [1, 2])
def test_messages_take_their_conversations_hotel(before: Any, hotels: int) -> None:
    rows = _history(before, hotels=hotels)

    apps = _migrate(AFTER)

    Message, DeferredStatus = (
        apps.get_model("messaging", "Message"),
        apps.get_model("messaging", "DeferredStatus"),
    )
    assert sorted(Message.objects.values_list("pk", "hotel_id")) == sorted(rows)
    deferred = list(DeferredStatus.objects.values_list("id_message", "hotel_id"))
    if hotels == 1:
        assert deferred == [("EARLY", rows[0][1])]  # the only hotel's
    else:
        assert deferred == []  # several hotels: it names none of them
    # The key is per hotel now: the same id and direction at another hotel is another message.
    if hotels == 2:
        (_, _), (_, _), (theirs_in, _), (theirs_out, _) = rows
        Message.objects.filter(pk=theirs_in).update(provider_message_id="M0")  # hotel 0 has ("in", "M0")
        with pytest.raises(IntegrityError), transaction.atomic():
            Message.objects.filter(pk=theirs_out).update(direction="in", provider_message_id="M0")
