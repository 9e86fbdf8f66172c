"""Reads used by the reply pipeline, admin, the API, the commands and the health checks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

from messaging.models import Conversation, DeliveryAttempt, Hotel, Message, ReplyJob
from reliability import tenancy
from reliability.dashboard import ReplyStats
from reliability.reports import percentile_rank
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


def _hotel_ids(tenants: frozenset[str]) -> list[int]:
    return sorted(int(t) for t in tenants if t.isdigit())


def reply_stats(*, since: datetime, until: datetime, tenants: frozenset[str] | None) -> dict[str, Any]:
    """The replies to guest messages received in [since, until) (of ``tenants``' hotels; None = all),
    for ``reliability.reports`` (registered in ``MessagingConfig.ready``).

    ``by_result``: done (the AI's answer), degraded (a canned answer), dead, and the jobs still on
    their way (pending, in_progress, pending_provider_recovery). ``latency_seconds``: from the guest's
    message to Green API accepting the reply (the job is created with the message, completed when
    accepted), nearest-rank p50 / p95 over every answered reply, computed in SQL (two indexed
    single-row reads, on SQLite and PostgreSQL alike), so no row set is loaded into memory."""
    jobs = ReplyJob.objects.filter(created_at__gte=since, created_at__lt=until)
    if tenants is not None:
        jobs = jobs.filter(inbound__conversation__hotel_id__in=_hotel_ids(tenants))
    by_result = {status: 0 for status in ReplyJob.Status.values}
    by_result["degraded"] = 0
    rows = jobs.order_by().values("status", "degraded").annotate(n=Count("id"))
    for row in rows:
        done_degraded = row["status"] == ReplyJob.Status.DONE and row["degraded"]
        key = "degraded" if done_degraded else row["status"]
        by_result[key] = by_result.get(key, 0) + int(row["n"])
    answered = jobs.filter(status=ReplyJob.Status.DONE, completed_at__isnull=False).annotate(
        latency=ExpressionWrapper(F("completed_at") - F("created_at"), output_field=DurationField())
    )
    count = answered.count()
    latency: dict[str, Any] = {"p50": None, "p95": None, "count": count}
    if count:
        ordered = answered.order_by("latency", "pk").values_list("latency", flat=True)
        for key, fraction in (("p50", 0.5), ("p95", 0.95)):
            value = ordered[percentile_rank(count, fraction)]
            latency[key] = round(value.total_seconds(), 3) if isinstance(value, timedelta) else None
    return {"by_result": by_result, "latency_seconds": latency}


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


# --- staff console providers (registered with reliability in apps.py) ------------------------------
def hotel_labels(keys: Iterable[str]) -> dict[str, str]:
    """{hotel id as a string: hotel name} for the tenant keys that are hotel ids."""
    ids = [int(k) for k in keys if str(k).isdigit()]
    return {str(pk): name for pk, name in Hotel.objects.filter(pk__in=ids).values_list("pk", "name")}


def reply_stats_hourly(*, since: datetime, until: datetime, tenants: frozenset[str] | None) -> ReplyStats:
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
