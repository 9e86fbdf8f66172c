"""Reads used by the reply pipeline, admin, the API and the commands."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from django.db.models import Count, QuerySet
from django.db.models.functions import TruncHour

from messaging.models import Conversation, DeliveryAttempt, Hotel, Message, ReplyJob
from reliability import tenancy
from reliability.dashboard import ReplyStats
from reliability.services import mask_phone


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


# --- staff console providers (registered with reliability in apps.py) ------------------------------
def hotel_labels(keys: Iterable[str]) -> dict[str, str]:
    """{hotel id as a string: hotel name} for the tenant keys that are hotel ids."""
    ids = [int(k) for k in keys if str(k).isdigit()]
    return {str(pk): name for pk, name in Hotel.objects.filter(pk__in=ids).values_list("pk", "name")}


def reply_stats(*, since: datetime, until: datetime, tenants: frozenset[str] | None) -> ReplyStats:
    """Replies of ``tenants`` (hotel ids; None = every hotel) finished between ``since`` and
    ``until``, by hour and result, and the guest latencies (inbound stored → reply accepted)."""
    jobs = ReplyJob.objects.all()
    if tenants is not None:
        jobs = jobs.filter(inbound__conversation__hotel_id__in=[int(t) for t in tenants if t.isdigit()])
    hourly: dict[datetime, dict[str, int]] = {}

    def add(rows: Iterable[dict[str, Any]], result: Callable[[dict[str, Any]], str]) -> None:
        for row in rows:
            bucket = hourly.setdefault(row["hour"], {})
            key = result(row)
            bucket[key] = bucket.get(key, 0) + row["n"]

    done = jobs.filter(status=ReplyJob.Status.DONE, completed_at__gte=since, completed_at__lte=until)
    add(
        done.order_by()
        .annotate(hour=TruncHour("completed_at", tzinfo=UTC))
        .values("hour", "degraded")
        .annotate(n=Count("id")),
        lambda row: "degraded" if row["degraded"] else "delivered",
    )
    dead = jobs.filter(status=ReplyJob.Status.DEAD, updated_at__gte=since, updated_at__lte=until)
    add(
        dead.order_by()
        .annotate(hour=TruncHour("updated_at", tzinfo=UTC))
        .values("hour")
        .annotate(n=Count("id")),
        lambda row: "dead",
    )
    pairs = jobs.filter(outbound__accepted_at__gte=since, outbound__accepted_at__lte=until).values_list(
        "inbound__created_at", "outbound__accepted_at"
    )[:100_000]
    latencies = [
        max(0.0, (accepted - created).total_seconds()) for created, accepted in pairs if accepted is not None
    ]
    return ReplyStats(hourly=hourly, latencies=latencies)


def reply_job_attempts(job_id: int) -> list[dict[str, Any]]:
    """The delivery attempts of reply job ``job_id``, oldest first (errors masked)."""
    return [
        {
            "started": attempt.started_at,
            "claim": attempt.attempt,
            "step": attempt.get_step_display(),
            "outcome": attempt.get_outcome_display(),
            "HTTP": attempt.http_status or "",
            "ms": attempt.duration_ms,
            "error": mask_phone(attempt.error),
        }
        for attempt in DeliveryAttempt.objects.filter(job_id=job_id).order_by("started_at", "id")[:200]
    ]
