"""Reads used by the reply pipeline and the commands."""

from __future__ import annotations

from django.db.models import QuerySet

from messaging.models import Conversation, Message


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
