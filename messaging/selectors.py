"""Reads used by the reply pipeline, the commands and the health checks."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from messaging.models import Conversation, Hotel, Message, ReplyJob


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


def reply_jobs_overdue(*, older_than: float, now: datetime | None = None) -> tuple[int, float | None]:
    """(count, oldest overdue seconds) of reply jobs due for more than ``older_than`` seconds and
    not taken: pending past their attempt time, or in progress with an expired lease."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=older_than)
    overdue = ReplyJob.objects.filter(
        Q(status=ReplyJob.Status.PENDING, next_attempt_at__lte=cutoff)
        | Q(status=ReplyJob.Status.IN_PROGRESS, lease_expires_at__lte=cutoff)
    )
    count = overdue.count()
    if not count:
        return 0, None
    oldest = overdue.order_by("next_attempt_at").values_list("next_attempt_at", flat=True).first()
    return count, (now - oldest).total_seconds() if oldest else None


def hotels_for_health() -> list[Hotel]:
    """Every hotel, for the instance-state health check."""
    return list(Hotel.objects.order_by("name", "pk"))
