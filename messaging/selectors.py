"""Reads used by the reply pipeline, admin, the API, the commands and the health checks."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, DateTimeField, DurationField, ExpressionWrapper, F, Q, QuerySet, Value
from django.db.models.functions import Coalesce, Greatest, TruncHour
from django.utils import timezone

from messaging.models import Conversation, DeliveryAttempt, Hotel, Message, ReplyJob
from messaging.permissions import is_operations
from reliability.masking import mask_numbers


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
    if is_operations(user):
        return Hotel.objects.all()
    if not getattr(user, "is_authenticated", False):
        return Hotel.objects.none()
    return Hotel.objects.filter(staff=user)


def _hotel_ids(tenants: frozenset[str]) -> list[int]:
    return sorted(int(t) for t in tenants if t.isdigit())


# --- reply statistics: ONE definition for the report, the dashboard, the API and degradation ------
@dataclass(frozen=True, slots=True)
class ReplyLatency:
    """Seconds from a guest's message being stored to Green API accepting our reply to it, over
    the replies accepted in a period: nearest-rank p50 / p95 (an observed value, never an
    interpolated one) and how many replies there were."""

    p50: float | None = None
    p95: float | None = None
    count: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"p50": self.p50, "p95": self.p95, "count": self.count}


@dataclass(frozen=True, slots=True)
class ReplyStats:
    """Replies of some hotels over [since, until): ``by_result`` counts the reply jobs of the guest
    messages received in the period (done, degraded, dead, and those still on their way);
    ``hourly`` maps the start of each hour (aware, UTC) to the replies finished in it by result
    (delivered / degraded / dead); ``latency`` is :func:`reply_latency` over the period."""

    by_result: dict[str, int] = field(default_factory=dict)
    hourly: dict[datetime, dict[str, int]] = field(default_factory=dict)
    latency: ReplyLatency = ReplyLatency()


def percentile_index(count: int, q: float) -> int:
    """Zero-based index of the nearest-rank ``q``-th percentile (0-100) in ``count`` sorted values."""
    return max(0, min(count - 1, math.ceil(q / 100.0 * count) - 1))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0-100) of ``values``; None without values. The one
    percentile of the project: :func:`reply_latency` picks the same rank in SQL."""
    if not values:
        return None
    return sorted(values)[percentile_index(len(values), q)]


#: Jobs that are the bot's replies (the statistics' subject): a message written by staff is not
#: one, and a job closed because staff answer the guest (superseded) has no bot reply to count.
BOT_REPLY_KINDS = (ReplyJob.Kind.ANSWER, ReplyJob.Kind.HANDOFF)


def _hotel_jobs(tenants: frozenset[str] | None) -> QuerySet[ReplyJob]:
    jobs = ReplyJob.objects.filter(kind__in=BOT_REPLY_KINDS).exclude(status=ReplyJob.Status.SUPERSEDED)
    if tenants is not None:
        jobs = jobs.filter(inbound__hotel_id__in=_hotel_ids(tenants))  # the message's own copy: no join
    return jobs


def reply_latency(*, since: datetime, until: datetime, tenants: frozenset[str] | None = None) -> ReplyLatency:
    """THE reply latency: from the guest's message stored (``inbound.created_at``) to Green API
    accepting our reply (``outbound.accepted_at``), over the replies accepted in [since, until) of
    ``tenants``' hotels (None = all); the same moments as the ``hotelbot_reply_latency_seconds``
    histogram. Ranked in SQL (a count and one indexed row per percentile, on SQLite and PostgreSQL
    alike): no row set is loaded into memory."""
    accepted = (
        _hotel_jobs(tenants)
        .filter(outbound__accepted_at__gte=since, outbound__accepted_at__lt=until)
        .annotate(
            latency=ExpressionWrapper(
                F("outbound__accepted_at") - F("inbound__created_at"), output_field=DurationField()
            )
        )
    )
    count = accepted.count()
    if not count:
        return ReplyLatency()
    ordered = accepted.order_by("latency", "pk").values_list("latency", flat=True)

    def at(q: float) -> float | None:
        value = ordered[percentile_index(count, q)]
        return round(value.total_seconds(), 3) if isinstance(value, timedelta) else None

    return ReplyLatency(p50=at(50), p95=at(95), count=count)


def _by_result(jobs: QuerySet[ReplyJob]) -> dict[str, int]:
    by_result = {status: 0 for status in ReplyJob.Status.values if status != ReplyJob.Status.SUPERSEDED}
    by_result["degraded"] = 0
    rows = jobs.order_by().values("status", "degraded").annotate(n=Count("id"))
    for row in rows:
        done_degraded = row["status"] == ReplyJob.Status.DONE and row["degraded"]
        key = "degraded" if done_degraded else row["status"]
        by_result[key] = by_result.get(key, 0) + int(row["n"])
    return by_result


def _hourly(jobs: QuerySet[ReplyJob], since: datetime, until: datetime) -> dict[datetime, dict[str, int]]:
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
    # When it died: completed_at (set by the burial; index replyjob_completed). updated_at has no
    # index (a scan of every dead job of the year: make bench-scale) and moves with later writes.
    dead = jobs.filter(status=ReplyJob.Status.DEAD, completed_at__gte=since, completed_at__lte=until)
    add(
        dead.order_by()
        .annotate(hour=TruncHour("completed_at", tzinfo=UTC))
        .values("hour")
        .annotate(n=Count("id")),
        lambda row: "dead",
    )
    return hourly


def reply_stats(*, since: datetime, until: datetime, tenants: frozenset[str] | None) -> ReplyStats:
    """The reply statistics of ``tenants``' hotels (None = all) over [since, until): one selector
    for the reliability report, the ops dashboard and the API (see :class:`ReplyStats`)."""
    jobs = _hotel_jobs(tenants)
    return ReplyStats(
        by_result=_by_result(jobs.filter(created_at__gte=since, created_at__lt=until)),
        hourly=_hourly(jobs, since, until),
        latency=reply_latency(since=since, until=until, tenants=tenants),
    )


def reply_jobs_overdue(*, older_than: float, now: datetime | None = None) -> tuple[int, float | None]:
    """(count, oldest overdue seconds) of reply jobs due for more than ``older_than`` seconds and
    not taken: pending past their attempt time, or in progress with an expired lease."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=older_than)
    overdue = ReplyJob.objects.filter(
        Q(status=ReplyJob.Status.PENDING, next_attempt_at__lte=cutoff)
        | Q(status=ReplyJob.Status.IN_PROGRESS, lease_expires_at__lte=cutoff),
        kind__in=BOT_REPLY_KINDS,
    )
    count = overdue.count()
    if not count:
        return 0, None
    oldest = overdue.order_by("next_attempt_at").values_list("next_attempt_at", flat=True).first()
    return count, (now - oldest).total_seconds() if oldest else None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def hotels_to_probe(*, limit: int) -> list[Hotel]:
    """The instance-state check's slice: the ``limit`` hotels whose state was known (pushed or
    asked) or asked longest ago, never first. Asking moves a hotel to the back of the line, so every
    hotel is asked within ceil(hotels / limit) runs, and a push spares it for a while."""
    last = Greatest(
        Coalesce("green_api_state_changed_at", Value(_EPOCH), output_field=DateTimeField()),
        Coalesce("green_api_state_checked_at", Value(_EPOCH), output_field=DateTimeField()),
    )
    hotels = Hotel.objects.only("pk", "name", "green_api_instance_id", "green_api_token")
    return list(hotels.annotate(last_known=last).order_by("last_known", "pk")[:limit])


@dataclass(frozen=True, slots=True)
class HotelState:
    name: str
    instance_id: str
    state: str
    known_at: datetime | None


@dataclass(frozen=True, slots=True)
class InstanceStates:
    """Every hotel's instance state as last known: ``authorized`` ones, known ``not_authorized``
    ones (a state other than authorized, known within the max age) and ``unknown`` ones (never
    known, or longer ago). The lists hold the first few by name; the counts cover every hotel."""

    hotels: int
    authorized: int
    not_authorized_count: int
    not_authorized: list[HotelState]
    unknown_count: int
    unknown: list[HotelState]


def instance_states(*, max_age: float, names: int) -> InstanceStates:
    """The instance-state check's verdict over every hotel, in three queries whatever their number."""
    fresh = Q(green_api_state_changed_at__gte=timezone.now() - timedelta(seconds=max_age)) & ~Q(
        green_api_state=""
    )
    authorized = fresh & Q(green_api_state="authorized")
    not_authorized = fresh & ~Q(green_api_state="authorized")
    counts = Hotel.objects.aggregate(
        hotels=Count("pk"),
        authorized=Count("pk", filter=authorized),
        not_authorized=Count("pk", filter=not_authorized),
    )

    def first(condition: Q) -> list[HotelState]:
        rows = Hotel.objects.filter(condition).order_by("name", "pk")[:names]
        fields = ("name", "green_api_instance_id", "green_api_state", "green_api_state_changed_at")
        return [HotelState(*row) for row in rows.values_list(*fields)]

    return InstanceStates(
        hotels=counts["hotels"],
        authorized=counts["authorized"],
        not_authorized_count=counts["not_authorized"],
        not_authorized=first(not_authorized),
        unknown_count=counts["hotels"] - counts["authorized"] - counts["not_authorized"],
        unknown=first(~fresh),
    )


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


def reply_latency_p95(*, minutes: float = 5.0) -> float | None:
    """The ``reply_p95_above`` degradation rule's signal: :func:`reply_latency`'s p95 over the
    replies accepted in the last ``minutes``; None when there were none."""
    now = timezone.now()
    return reply_latency(since=now - timedelta(minutes=minutes), until=now).p95


# --- staff console reads ---------------------------------------------------------------------------
def hotel_labels(keys: Iterable[str]) -> dict[str, str]:
    """{hotel id as a string: hotel name} for the tenant keys that are hotel ids."""
    ids = [int(k) for k in keys if str(k).isdigit()]
    return {str(pk): name for pk, name in Hotel.objects.filter(pk__in=ids).values_list("pk", "name")}


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
            "error": mask_numbers(attempt.error),
        }
        for attempt in DeliveryAttempt.objects.filter(job_id=job_id).order_by("started_at", "id")[:200]
    ]
