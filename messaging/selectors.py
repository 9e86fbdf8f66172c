"""Reads used by the reply pipeline, admin, the API, the commands and the health checks."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import (
    Case,
    Count,
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Greatest, TruncHour
from django.utils import timezone

from hotelbot.exceptions import NotFound
from messaging import reception
from messaging.bot_texts import DEFAULT_LANGUAGE
from messaging.models import (
    CannedResponse,
    Conversation,
    ConversationNote,
    DeliveryAttempt,
    Hotel,
    HotelText,
    Message,
    ReceptionHours,
    ReplyJob,
)
from messaging.permissions import is_operations
from messaging.services import statements
from reliability.masking import mask_chat_id, mask_numbers


def conversation_history(*, conversation: Conversation, before: Message, limit: int) -> list[Message]:
    """The last ``limit`` messages of the conversation before ``before``, oldest first (a read of
    every reply job, compiled once per process and limit: ``statements.prepared_read``)."""
    recent = statements.prepared_read(_history_query(limit), conversation.pk, before.pk)
    return list(reversed(recent))


@functools.cache
def _history_query(limit: int) -> Callable[[int, int], QuerySet[Message]]:
    def history(conversation_id: int, before_id: int) -> QuerySet[Message]:
        return (
            Message.objects.filter(conversation_id=conversation_id, pk__lt=before_id)
            .exclude(status=Message.Status.FAILED)
            .order_by("-pk")[:limit]
        )

    return history


def hotel_text_overrides(*, hotel_id: int, language: str) -> dict[tuple[str, str], str]:
    """The hotel's own texts in ``language`` and in English (the resolution's fallback), by (key,
    language), for ``bot_texts.text_resolve``: one query, made only when the bot needs a text."""
    rows = HotelText.objects.filter(hotel_id=hotel_id, language__in={language, DEFAULT_LANGUAGE})
    return {(key, lang): text for key, lang, text in rows.values_list("key", "language", "text")}


def burst_messages(*, job: ReplyJob) -> list[Message]:
    """The guest messages answer job ``job`` answers, oldest first: its own and those of the jobs
    merged into it (a burst, ``messaging.services.bursts``)."""
    return statements.prepared_read(_burst_query, job.inbound_id, job.pk)


def _burst_query(inbound_id: int, job_id: int) -> QuerySet[Message]:
    merged = ReplyJob.objects.filter(merged_into_id=job_id).values("inbound_id")
    return Message.objects.filter(Q(pk=inbound_id) | Q(pk__in=merged)).order_by("pk")


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
#: one, a job closed because staff answer the guest (superseded) has no bot reply to count, and a
#: burst's messages merged into its last one's job (merged) are answered by that one reply. An
#: opt-out confirmation is the bot's reply to the guest's STOP.
BOT_REPLY_KINDS = (ReplyJob.Kind.ANSWER, ReplyJob.Kind.HANDOFF, ReplyJob.Kind.OPT_OUT)
NO_BOT_REPLY = (ReplyJob.Status.SUPERSEDED, ReplyJob.Status.MERGED)


def _hotel_jobs(tenants: frozenset[str] | None) -> QuerySet[ReplyJob]:
    jobs = ReplyJob.objects.filter(kind__in=BOT_REPLY_KINDS).exclude(status__in=NO_BOT_REPLY)
    if tenants is not None:
        jobs = jobs.filter(inbound__hotel_id__in=_hotel_ids(tenants))  # the message's own copy: no join
    return jobs


def reply_latency(*, since: datetime, until: datetime, tenants: frozenset[str] | None = None) -> ReplyLatency:
    """THE reply latency: from the guest's message stored (the first of a burst answered in one reply:
    ``burst_started_at``; else ``inbound.created_at``) to Green API
    accepting our reply (``outbound.accepted_at``), over the replies accepted in [since, until) of
    ``tenants``' hotels (None = all); the same moments as the ``hotelbot_reply_latency_seconds``
    histogram. Ranked in SQL (a count and one indexed row per percentile, on SQLite and PostgreSQL
    alike): no row set is loaded into memory."""
    accepted = (
        _hotel_jobs(tenants)
        .filter(outbound__accepted_at__gte=since, outbound__accepted_at__lt=until)
        .annotate(
            latency=ExpressionWrapper(
                F("outbound__accepted_at") - Coalesce("burst_started_at", "inbound__created_at"),
                output_field=DurationField(),
            )
        )
    )
    return _ranked_latency(accepted)


def _ranked_latency(rows: QuerySet[Any]) -> ReplyLatency:
    """Nearest-rank p50 / p95 of the ``latency`` annotation of ``rows``, ranked in SQL (a count and
    one indexed row per percentile)."""
    count = rows.count()
    if not count:
        return ReplyLatency()
    ordered = rows.order_by("latency", "pk").values_list("latency", flat=True)

    def at(q: float) -> float | None:
        value = ordered[percentile_index(count, q)]
        return round(value.total_seconds(), 3) if isinstance(value, timedelta) else None

    return ReplyLatency(p50=at(50), p95=at(95), count=count)


def _by_result(jobs: QuerySet[ReplyJob]) -> dict[str, int]:
    by_result = {status: 0 for status in ReplyJob.Status.values if status not in NO_BOT_REPLY}
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


# --- handoffs: reception hours, guests waiting for staff, the first human reply (issue 19) ------------
def hotel_schedules(hotel_ids: Iterable[int]) -> dict[int, reception.Schedule]:
    """{hotel id: its reception hours in its time zone} in two queries (a hotel without rows is
    open 24/7; an unknown zone, which validation keeps out, counts as UTC)."""
    ids = sorted(set(hotel_ids))
    zones = dict(Hotel.objects.filter(pk__in=ids).values_list("pk", "timezone"))
    hours: dict[int, list[reception.Opening]] = {}
    rows = ReceptionHours.objects.filter(hotel_id__in=ids).values_list(
        "hotel_id", "weekday", "opens", "closes"
    )
    for hotel_id, weekday, opens, closes in rows:
        hours.setdefault(hotel_id, []).append(reception.Opening(weekday, opens, closes))
    schedules = {}
    for pk, name in zones.items():
        try:
            tz = reception.zone(name)
        except ValueError:
            tz = reception.zone("UTC")
        schedules[pk] = reception.Schedule(hours=tuple(hours.get(pk, ())), tz=tz)
    return schedules


def hotel_schedule(hotel_id: int) -> reception.Schedule:
    return hotel_schedules([hotel_id]).get(hotel_id, reception.ALWAYS_OPEN)


@dataclass(frozen=True, slots=True)
class Waiting:
    """A conversation waiting for staff: since when, for how long while reception was open, and
    the hotel's target (both in seconds)."""

    conversation_id: int
    hotel_id: int
    since: datetime
    waiting_seconds: float
    target_seconds: float

    @property
    def past_target(self) -> bool:
        return self.waiting_seconds >= self.target_seconds


#: At most this many waiting conversations (the oldest) are timed per read: the gauge, the
#: dashboard and the re-alert stay bounded however many guests wait.
WAITING_SCAN = 500


def conversations_waiting(
    *, now: datetime, tenants: frozenset[str] | None = None, among: QuerySet[Conversation] | None = None
) -> list[Waiting]:
    """THE waiting time: conversations whose owner is ``waiting`` (of ``tenants``' hotels, None =
    all; ``among``: a narrower set), oldest first, at most :data:`WAITING_SCAN`, each with the
    seconds reception was open since ``owner_since`` and the hotel's ``handoff_target_minutes``."""
    rows = (among if among is not None else Conversation.objects.all()).filter(
        owner=Conversation.Owner.WAITING, owner_since__isnull=False
    )
    if tenants is not None:
        rows = rows.filter(hotel_id__in=_hotel_ids(tenants))
    found = list(
        rows.order_by("owner_since", "pk").values_list(
            "pk", "hotel_id", "owner_since", "hotel__handoff_target_minutes"
        )[:WAITING_SCAN]
    )
    schedules = hotel_schedules(hotel_id for _, hotel_id, _, _ in found)
    return [
        Waiting(
            conversation_id=pk,
            hotel_id=hotel_id,
            since=since,
            waiting_seconds=schedules.get(hotel_id, reception.ALWAYS_OPEN).open_seconds_between(since, now),
            target_seconds=target * 60.0,
        )
        for pk, hotel_id, since, target in found
        if since is not None  # (excluded above)
    ]


@dataclass(frozen=True, slots=True)
class HandoffStats:
    """Guests and staff over [since, until) of some hotels: conversations ``waiting`` for staff now
    (``past_target``: of those, waiting longer than their hotel's target while reception was open),
    the time to the first human reply (``first_reply``: from the handoff to the first staff message,
    over the first replies in the period; wall-clock, what the guest lived), and the conversations
    active in the period and how many of them the bot handled alone (never handed to staff nor
    taken by them)."""

    waiting: int = 0
    past_target: int = 0
    first_reply: ReplyLatency = ReplyLatency()
    conversations: int = 0
    by_bot: int = 0

    @property
    def bot_share(self) -> float | None:
        return round(self.by_bot / self.conversations, 4) if self.conversations else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "waiting": self.waiting,
            "waiting_past_target": self.past_target,
            "first_human_reply_seconds": self.first_reply.as_dict(),
            "conversations": self.conversations,
            "resolved_by_bot": self.by_bot,
            "resolved_by_bot_share": self.bot_share,
        }


def waiting_counts(*, now: datetime, tenants: frozenset[str] | None = None) -> tuple[int, int]:
    """(conversations waiting for staff, of them past their hotel's target): the gauge's numbers."""
    rows = Conversation.objects.filter(owner=Conversation.Owner.WAITING)
    if tenants is not None:
        rows = rows.filter(hotel_id__in=_hotel_ids(tenants))
    waiting = rows.count()
    past = sum(w.past_target for w in conversations_waiting(now=now, tenants=tenants)) if waiting else 0
    return waiting, past


def handoff_stats(
    *, since: datetime, until: datetime, tenants: frozenset[str] | None, now: datetime | None = None
) -> HandoffStats:
    """The handoff figures of ``tenants``' hotels (None = all): one selector for the ops dashboard,
    the reliability report and the metrics (see :class:`HandoffStats`)."""
    conversations = Conversation.objects.all()
    if tenants is not None:
        conversations = conversations.filter(hotel_id__in=_hotel_ids(tenants))
    answered = conversations.filter(
        staff_replied_at__gte=since, staff_replied_at__lt=until, handoff_at__isnull=False
    ).annotate(
        latency=ExpressionWrapper(F("staff_replied_at") - F("handoff_at"), output_field=DurationField())
    )
    total, by_bot = conversations_handled(since=since, until=until, tenants=tenants)
    waiting, past = waiting_counts(now=now or timezone.now(), tenants=tenants)  # a snapshot: now
    return HandoffStats(
        waiting=waiting,
        past_target=past,
        first_reply=_ranked_latency(answered),
        conversations=total,
        by_bot=by_bot,
    )


#: The window of the scrape-time gauge ``hotelbot_conversations_recent`` (bounded: one index range).
HANDLED_WINDOW = timedelta(hours=24)


def conversations_handled(
    *, since: datetime, until: datetime, tenants: frozenset[str] | None = None
) -> tuple[int, int]:
    """(conversations with a message in [since, until), of them those the bot handled alone: never
    handed to staff nor taken by them): the one definition of "resolved by the bot" (the dashboard,
    the report and the gauge). One aggregate over the ``last_message_at`` index range."""
    conversations = Conversation.objects.filter(last_message_at__gte=since, last_message_at__lt=until)
    if tenants is not None:
        conversations = conversations.filter(hotel_id__in=_hotel_ids(tenants))
    counts = conversations.aggregate(
        total=Count("pk"), by_bot=Count("pk", filter=Q(owner_reason="", handoff_at__isnull=True))
    )
    return counts["total"], counts["by_bot"]


def handled_counts(*, now: datetime) -> tuple[int, int]:
    """(by the bot alone, by staff) of every hotel's conversations active in the last
    :data:`HANDLED_WINDOW`: the gauge's numbers."""
    total, by_bot = conversations_handled(since=now - HANDLED_WINDOW, until=now + timedelta(microseconds=1))
    return by_bot, total - by_bot


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


# --- Beat's idle checks (reliability.scheduler) ------------------------------------------------------
def reply_jobs_parked_exist() -> bool:
    """Any reply parked as pending provider recovery: whether beat publishes the drain
    (``replies.reply_jobs_drain``) at all. One indexed EXISTS (``replyjob_due``)."""
    from messaging.models import ReplyJob

    return ReplyJob.objects.filter(status=ReplyJob.Status.PENDING_PROVIDER_RECOVERY).exists()


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


# --- the staff inbox (docs/handoff.md) -------------------------------------------------------------
Owner = Conversation.Owner
#: The owners the inbox lists: conversations waiting for staff, then those staff hold.
INBOX_OWNERS: tuple[str, ...] = (Owner.WAITING, Owner.STAFF)
#: A conversation's thread shows at most its latest this many messages.
THREAD_LIMIT = 300
#: Staff replies not sent yet (no outbound message) that the thread shows as queued or dead.
_STAFF_UNSENT = (
    ReplyJob.Status.PENDING,
    ReplyJob.Status.IN_PROGRESS,
    ReplyJob.Status.PENDING_PROVIDER_RECOVERY,
    ReplyJob.Status.DEAD,
)


def inbox_conversations(
    *, user: Any, now: datetime, owners: Iterable[str] = INBOX_OWNERS
) -> QuerySet[Conversation]:
    """The conversations of ``user``'s hotels that wait for staff (oldest wait first), then those
    staff hold (a hold from the phone only until it ends), with the hotel, the guest and the last
    message (``last_text``, ``last_type``, ``last_direction``, ``last_at``) in the same query."""
    wanted = set(owners)
    shown = Q(pk__in=[])
    if Owner.WAITING in wanted:
        shown |= Q(owner=Owner.WAITING)
    if Owner.STAFF in wanted:
        shown |= Q(owner=Owner.STAFF) & (Q(owner_until__isnull=True) | Q(owner_until__gt=now))
    conversations = Conversation.objects.filter(shown, hotel__in=hotels_visible_to(user=user))
    return _with_last_message(conversations).order_by("rank", "owner_since", "pk")


def _with_last_message(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """With the hotel, the guest, the owner's user and the last message, in one query."""
    last = Message.objects.filter(conversation=OuterRef("pk")).order_by("-created_at", "-id")
    return conversations.select_related("hotel", "guest", "owner_user").annotate(
        rank=Case(When(owner=Owner.WAITING, then=Value(0)), default=Value(1)),
        last_text=Subquery(last.values("text")[:1]),
        last_type=Subquery(last.values("message_type")[:1]),
        last_direction=Subquery(last.values("direction")[:1]),
        last_at=Subquery(last.values("created_at")[:1]),
    )


@dataclass(frozen=True, slots=True)
class InboxRow:
    """One conversation of the inbox: who, why, and how long against the hotel's target."""

    conversation: Conversation
    guest: str  # masked
    waited_seconds: float
    target_seconds: float
    last_message: str

    @property
    def overdue(self) -> bool:
        return self.conversation.owner == Owner.WAITING and self.waited_seconds > self.target_seconds


def inbox_rows(conversations: Iterable[Conversation], *, now: datetime) -> list[InboxRow]:
    """Rows of :func:`inbox_conversations`' conversations (no query of their own)."""
    rows = []
    for conversation in conversations:
        since = conversation.owner_since or conversation.started_at
        last = getattr(conversation, "last_text", "") or ""
        last_type = getattr(conversation, "last_type", None)
        if not last and last_type:
            last = f"[{last_type}]"
        rows.append(
            InboxRow(
                conversation=conversation,
                guest=mask_chat_id(conversation.guest.chat_id),
                waited_seconds=max(0.0, (now - since).total_seconds()),
                target_seconds=conversation.hotel.handoff_target_minutes * 60.0,
                last_message=last,
            )
        )
    return rows


def inbox_conversation_get(*, user: Any, pk: int) -> Conversation:
    """A conversation of ``user``'s hotels, with its hotel, guest, owner and last message (an
    :func:`inbox_rows` row); NotFound otherwise (another hotel's is "not found" too: ids cannot be
    probed)."""
    conversations = Conversation.objects.filter(pk=pk, hotel__in=hotels_visible_to(user=user))
    conversation = _with_last_message(conversations).first()
    if conversation is None:
        raise NotFound(f"No conversation {pk}.")
    return conversation


@dataclass(frozen=True, slots=True)
class ThreadItem:
    """One line of a conversation's thread: a message (``who``: guest, bot, staff, staff's phone),
    a staff reply not sent yet (``queued``), or an internal note (never sent to the guest)."""

    kind: str  # message, queued, note
    pk: int
    at: datetime
    who: str
    text: str
    status: str = ""
    status_detail: str = ""


@dataclass(frozen=True, slots=True)
class Thread:
    items: list[ThreadItem]
    truncated: bool  # older messages than the latest THREAD_LIMIT are not shown


def _sender(message: Message) -> str:
    if message.direction == Message.Direction.INBOUND:
        return "guest"
    job = getattr(message, "sent_by_job", None)
    if job is None:
        return "staff (phone)"  # outgoingMessageReceived: typed on the hotel's own phone
    return "staff" if job.kind == ReplyJob.Kind.STAFF or job.manual_at is not None else "bot"


def conversation_thread(*, conversation: Conversation, limit: int = THREAD_LIMIT) -> Thread:
    """The whole thread, oldest first: the guest's, the bot's and staff's messages with their delivery
    status, staff replies still queued (or dead before they left), and the internal notes. Three
    queries whatever its length (the latest ``limit`` messages)."""
    recent = list(
        Message.objects.filter(conversation=conversation)
        .select_related("sent_by_job")
        .order_by("-created_at", "-id")[: limit + 1]
    )
    truncated = len(recent) > limit
    items = [
        ThreadItem(
            kind="message",
            pk=m.pk,
            at=m.created_at,
            who=_sender(m),
            text=m.text or f"[{m.message_type}]",
            status=m.get_status_display() if m.direction == Message.Direction.OUTBOUND else "received",
            status_detail=mask_numbers(m.status_detail),
        )
        for m in reversed(recent[:limit])
    ]
    unsent = ReplyJob.objects.filter(
        inbound__conversation=conversation,
        kind=ReplyJob.Kind.STAFF,
        outbound__isnull=True,
        status__in=_STAFF_UNSENT,
    ).order_by("created_at", "id")[:limit]
    items += [
        ThreadItem(
            kind="queued",
            pk=job.pk,
            at=job.created_at,
            who="staff",
            text=job.reply_text,
            status="dead" if job.status == ReplyJob.Status.DEAD else "queued",
            status_detail=mask_numbers(job.last_error[:300]),
        )
        for job in unsent
    ]
    items += [
        ThreadItem(kind="note", pk=n.pk, at=n.created_at, who=_author(n), text=n.text)
        for n in conversation_notes(conversation_id=conversation.pk)[:limit]
    ]
    items.sort(key=lambda item: (item.at, item.pk))
    return Thread(items=items, truncated=truncated)


def _author(note: ConversationNote) -> str:
    return note.author.get_username() if note.author is not None else "(deleted user)"


def conversation_notes(*, conversation_id: int) -> QuerySet[ConversationNote]:
    """The internal notes of a conversation, oldest first, with their authors."""
    return ConversationNote.objects.filter(conversation_id=conversation_id).select_related("author")


def canned_responses_list(*, hotel_id: int, language: str | None = None) -> QuerySet[CannedResponse]:
    """A hotel's canned responses in the picker's order (of one language when given)."""
    responses = CannedResponse.objects.filter(hotel_id=hotel_id)
    if language:
        responses = responses.filter(language=language)
    return responses.order_by("ordering", "title", "language", "pk")
