"""Reads used by the reply pipeline, admin, the API and the commands."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from messaging.models import Conversation, Hotel, Message
from reliability import tenancy


def conversation_history(*, conversation: Conversation, before: Message, limit: int) -> list[Message]:
    """The last ``limit`` messages of the conversation before ``before``, oldest first."""
    recent = (
        Message.objects.filter(conversation=conversation, pk__lt=before.pk)
        .exclude(status=Message.Status.FAILED)
        .order_by("-pk")[:limit]
    )
    return list(reversed(list(recent)))


def replies_for_chat(*, chat_id: str, after_inbound_id: str) -> QuerySet[Message]:
    """Outbound replies to the inbound message with Green API id ``after_inbound_id``."""
    return Message.objects.filter(
        direction=Message.Direction.OUTBOUND,
        sent_by_job__inbound__provider_message_id=after_inbound_id,
        conversation__guest__chat_id=chat_id,
    )


def hotel_ids_staffed_by(user: Any) -> list[int]:
    """Ids of the hotels ``user`` is staff of (the tenant keys of messaging rows)."""
    return list(Hotel.objects.filter(staff=user).values_list("pk", flat=True))


def hotels_visible_to(*, user: Any) -> QuerySet[Hotel]:
    """Every hotel for operations (superusers, the operations group); else the hotels ``user`` staffs."""
    if tenancy.is_operations(user):
        return Hotel.objects.all()
    if not getattr(user, "is_authenticated", False):
        return Hotel.objects.none()
    return Hotel.objects.filter(staff=user)
