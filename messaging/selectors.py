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


# --- Degradation signals (issue 9) -----------------------------------------------------------------
def reply_backlog_count() -> int:
    """Reply jobs due and unfinished: pending and due, or being processed (parked ones excluded:
    they wait for a provider, not for us)."""
    from django.db.models import Q
    from django.utils import timezone

    from messaging.models import ReplyJob

    now = timezone.now()
    return ReplyJob.objects.filter(
        Q(status=ReplyJob.Status.PENDING, next_attempt_at__lte=now) | Q(status=ReplyJob.Status.IN_PROGRESS)
    ).count()


def reply_latency_p95(*, minutes: float = 5.0, limit: int = 2000) -> float | None:
    """p95 of seconds from a guest's message to its reply's completion, over jobs completed in the
    last ``minutes`` (at most ``limit`` of the latest); None when there were none."""
    from datetime import timedelta

    from django.db.models import DurationField, ExpressionWrapper, F
    from django.utils import timezone

    from messaging.models import ReplyJob

    since = timezone.now() - timedelta(minutes=minutes)
    latencies = sorted(
        d.total_seconds()
        for d in ReplyJob.objects.filter(status=ReplyJob.Status.DONE, completed_at__gte=since)
        .annotate(
            latency=ExpressionWrapper(
                F("completed_at") - F("inbound__created_at"), output_field=DurationField()
            )
        )
        .order_by("-completed_at")
        .values_list("latency", flat=True)[:limit]
        if d is not None
    )
    if not latencies:
        return None
    return latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
