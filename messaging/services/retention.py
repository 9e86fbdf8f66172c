"""Retention of messaging's records, and forgetting a guest on request.

The rules (registered with reliability's purge engine at start-up: ``reliability.retention``; run
by beat daily and by ``manage.py purge``), in the order they run:

* delivery attempts of finished reply jobs (done or dead) after ``RETENTION_DELIVERY_ATTEMPTS_DAYS``;
* guests' messages after the hotel's ``guest_data_retention_days`` (empty: ``RETENTION_MESSAGES_DAYS``),
  with the reply job of an inbound message and that job's attempts; never a message whose reply is
  not finished (pending, in progress, pending provider recovery), nor one whose job (as inbound or
  as the reply sent) an open dead letter is about;
* conversations left without messages whose last message is older than the same horizon (so the
  conversation of a kept message, and one with recent messages, stays);
* guests without conversations not seen for as long;
* deferred statuses no message claimed within ``statuses.DEFERRED_KEEP`` (hourly, beat).

Forgetting a guest (:func:`guest_forget`) erases their personal data in place (see its docstring).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from hotelbot.exceptions import NotFound, ValidationFailed
from messaging.models import Conversation, DeferredStatus, DeliveryAttempt, Guest, Hotel, Message, ReplyJob
from messaging.services import statuses
from reliability import dead_letters, masking
from reliability.audit import audit_record
from reliability.models import AuditEntry, DeadLetter
from reliability.retention import Rule, Scope, kept, older_than, register

FINISHED = (ReplyJob.Status.DONE, ReplyJob.Status.DEAD, ReplyJob.Status.SUPERSEDED)
UNFINISHED = (ReplyJob.Status.PENDING, ReplyJob.Status.IN_PROGRESS, ReplyJob.Status.PENDING_PROVIDER_RECOVERY)
JOB_SUBJECT = "messaging.replyjob"


def _open_letter_jobs() -> QuerySet[DeadLetter, Any]:
    """Ids of the reply jobs an open dead letter is about (their messages are still needed)."""
    letters = DeadLetter.objects.filter(status__in=DeadLetter.OPEN_STATUSES, subject_type=JOB_SUBJECT)
    return letters.values("subject_id")


def _needed_jobs() -> tuple[QuerySet[ReplyJob], QuerySet[ReplyJob]]:
    """The reply jobs whose messages are still needed, as two small sets that each have an index:
    the unfinished ones (``replyjob_status_recent``) and those an open dead letter is about."""
    return ReplyJob.objects.filter(status__in=UNFINISHED), ReplyJob.objects.filter(pk__in=_open_letter_jobs())


def guest_data_horizons(now: datetime) -> tuple[datetime, dict[datetime, list[int]]]:
    """The default horizon of guests' data, and the hotels with a setting of their own by horizon."""
    default = now - timedelta(days=settings.RETENTION_MESSAGES_DAYS)
    own: dict[datetime, list[int]] = defaultdict(list)
    for pk, days in Hotel.objects.exclude(guest_data_retention_days=None).values_list(
        "pk", "guest_data_retention_days"
    ):
        own[now - timedelta(days=days or settings.RETENTION_MESSAGES_DAYS)].append(pk)
    return default, dict(own)


def _per_hotel(now: datetime, hotel_field: str, older: Callable[[datetime], Q]) -> tuple[Q, datetime]:
    """``older(horizon)`` with each hotel's horizon (the default for hotels without a setting), and
    the latest horizon of all (the scan's bound)."""
    default, own = guest_data_horizons(now)
    with_own = [pk for pks in own.values() for pk in pks]
    condition = older(default) & ~Q(**{f"{hotel_field}__in": with_own}) if with_own else older(default)
    for horizon, pks in own.items():
        condition |= Q(**{f"{hotel_field}__in": pks}) & older(horizon)
    return condition, max([default, *own])


def _messages(now: datetime) -> Scope:
    condition, horizon = _per_hotel(now, "hotel_id", lambda h: Q(created_at__lt=h))
    rows = Message.objects.filter(condition, created_at__lt=horizon)
    # One NOT EXISTS per needed set and side (as the job's question or as the reply it sent), never
    # an OR: PostgreSQL turns each into an anti join against a set of a few hundred jobs read on its
    # index. ``NOT (EXISTS OR EXISTS)`` over ``status IN … OR id IN (letters)`` became subplans that
    # read the whole reply-job table twice in every statement of every window (bench-scale at 0.2)
    # and cost 57-88 ms a window's statement against 18-35 ms at a year of 1,000 hotels.
    for needed in _needed_jobs():
        for side in ("inbound_id", "outbound_id"):
            rows = rows.exclude(Exists(needed.filter(**{side: OuterRef("pk")})))
    return Scope(rows=rows, horizon=horizon)


def _messages_dependents(window: QuerySet[Message]) -> None:
    """A window's messages go with the reply job of each inbound one (and its attempts); a reply job
    whose sent message goes forgets it (the FK's SET_NULL)."""
    jobs = ReplyJob.objects.filter(inbound_id__in=window.values("pk"))
    DeliveryAttempt.objects.filter(job_id__in=jobs.values("pk"))._raw_delete(DeliveryAttempt.objects.db)
    jobs._raw_delete(jobs.db)
    ReplyJob.objects.filter(outbound_id__in=window.values("pk")).update(outbound=None)


def _conversations(now: datetime) -> Scope:
    condition, horizon = _per_hotel(now, "hotel_id", lambda h: Q(last_message_at__lt=h))
    rows = Conversation.objects.filter(condition, last_message_at__lt=horizon).exclude(
        Exists(Message.objects.filter(conversation_id=OuterRef("pk")))
    )
    return Scope(rows=rows, horizon=horizon)


def _guests(now: datetime) -> Scope:
    def older(h: datetime) -> Q:
        return Q(last_seen_at__lt=h) | Q(last_seen_at__isnull=True, created_at__lt=h)

    condition, horizon = _per_hotel(now, "hotel_id", older)
    rows = Guest.objects.filter(condition).exclude(
        Exists(Conversation.objects.filter(guest_id=OuterRef("pk")))
    )
    return Scope(rows=rows, horizon=horizon)


def _attempts(now: datetime) -> Scope:
    scope = older_than("RETENTION_DELIVERY_ATTEMPTS_DAYS", DeliveryAttempt, "started_at")(now)
    return Scope(rows=scope.rows.filter(job__status__in=FINISHED), horizon=scope.horizon)


def _deferred(now: datetime) -> Scope:
    horizon = now - statuses.DEFERRED_KEEP
    return Scope(rows=DeferredStatus.objects.filter(received_at__lt=horizon), horizon=horizon)


GUEST_DATA = kept("RETENTION_MESSAGES_DAYS") + " or the hotel's own"
DEFERRED_TABLE = "messaging.deferredstatus"


def rules_register() -> None:
    """messaging's tables, children first (a conversation goes once its messages went)."""
    register(
        Rule("messaging.deliveryattempt", kept("RETENTION_DELIVERY_ATTEMPTS_DAYS"), _attempts, "started_at")
    )
    register(Rule("messaging.message", GUEST_DATA, _messages, "created_at", _messages_dependents))
    # No time column bounds these scans (started_at / created_at carry no index): the walk goes to
    # the largest id, in windows, which the much smaller tables allow.
    register(Rule("messaging.conversation", GUEST_DATA, _conversations))
    register(Rule("messaging.guest", GUEST_DATA, _guests))
    register(Rule(DEFERRED_TABLE, f"{statuses.DEFERRED_KEEP.days} d", _deferred, "received_at"))


# --- forget a guest -------------------------------------------------------------------------------------
FORGOTTEN_PREFIX = "forgotten-"
FORGOTTEN_NOTE = "erased: the guest asked to be forgotten"


@dataclass(slots=True)
class ForgetOutcome:
    guest_id: int
    hotel_id: int
    masked_chat_id: str
    messages: int = 0
    reply_jobs: int = 0
    cancelled_jobs: int = 0
    dead_letters: int = 0
    dry_run: bool = False


def normalized_chat_id(text: str) -> str:
    """``+7 900 123-45-67``, ``79001234567`` or ``79001234567@c.us`` → ``79001234567@c.us``."""
    value = (text or "").strip()
    if "@" in value:
        return value
    digits = "".join(ch for ch in value if ch.isdigit())
    if len(digits) < 5:
        raise ValidationFailed(
            "Give the guest's WhatsApp number or chat id, e.g. 79001234567 or 79001234567@c.us.",
            details={"chat_id": "Expected a phone number or a chat id."},
        )
    return f"{digits}@c.us"


def guest_get(*, hotel: Hotel, chat_id: str) -> Guest:
    wanted = normalized_chat_id(chat_id)
    guest = Guest.objects.filter(hotel=hotel, chat_id=wanted).first()
    if guest is None:
        raise NotFound(f"Hotel {hotel.pk} has no guest {masking.mask_chat_id(wanted)}.")
    return guest


def guest_forget(
    *,
    guest: Guest,
    actor: Any = None,
    via: str = AuditEntry.Via.COMMAND,
    reason: str = "",
    dry_run: bool = False,
) -> ForgetOutcome:
    """Erase one guest's personal data, in place, in one transaction, audited.

    Erased, not deleted: the chat id becomes ``forgotten-<id>`` (not a WhatsApp address: nothing can
    be sent to it), the name, every message's text and provider detail, the reply and staff texts
    and errors of their reply jobs are emptied; the dead letters about their jobs keep only the ids
    a redrive needs, and quarantined notifications holding their number lose their raw body and
    payload (open letters among them are discarded). The rows stay so that the hotel's counts and
    reports stay true, a redelivered notification is still recognised (its message id is kept, so
    it is not stored again), and a worker holding a job never meets a missing row; they then age
    out with retention. Unfinished reply jobs are stopped (dead, lease taken): the guest gets no
    reply to a question they asked us to forget.
    """
    chat_id = guest.chat_id
    outcome = ForgetOutcome(
        guest_id=guest.pk,
        hotel_id=guest.hotel_id,
        masked_chat_id=masking.mask_chat_id(chat_id),
        dry_run=dry_run,
    )
    messages = Message.objects.filter(conversation__guest=guest)
    jobs = ReplyJob.objects.filter(inbound__conversation__guest=guest)
    letters = _letters_of(guest=guest, chat_id=chat_id, jobs=jobs)
    outcome.messages = messages.count()
    outcome.reply_jobs = jobs.count()
    outcome.cancelled_jobs = jobs.filter(status__in=UNFINISHED).count()
    outcome.dead_letters = letters.count()
    if dry_run:
        return outcome
    now = timezone.now()
    with transaction.atomic():
        Guest.objects.filter(pk=guest.pk).update(chat_id=f"{FORGOTTEN_PREFIX}{guest.pk}", display_name="")
        messages.update(text="", status_detail="")
        jobs.filter(status__in=UNFINISHED).update(
            status=ReplyJob.Status.DEAD, lease_token="", lease_expires_at=None, completed_at=now
        )
        jobs.update(reply_text="", manual_text="", last_error=FORGOTTEN_NOTE)
        DeliveryAttempt.objects.filter(job__in=jobs).update(error="")
        dead_letters.scrub(
            letters, keep_payload=("job_id", "inbound_message_id", "hotel_id"), note=FORGOTTEN_NOTE
        )
        audit_record(
            actor=actor,
            via=via,
            action="guest.forget",
            target=guest,
            tenant=str(guest.hotel_id),
            reason=reason,
            details={
                "chat_id": outcome.masked_chat_id,
                "messages": outcome.messages,
                "reply_jobs": outcome.reply_jobs,
                "cancelled_jobs": outcome.cancelled_jobs,
                "dead_letters": outcome.dead_letters,
            },
        )
    return outcome


def _letters_of(*, guest: Guest, chat_id: str, jobs: QuerySet[ReplyJob]) -> QuerySet[DeadLetter]:
    """The dead letters about the guest's reply jobs, and the hotel's (or unattributed) letters whose
    raw body holds the guest's number."""
    number = chat_id.partition("@")[0]
    about_jobs = Q(subject_type=JOB_SUBJECT, subject_id__in=jobs.values("pk"))
    holding_number = Q(tenant__in=[str(guest.hotel_id), ""], raw__contains=number) if number else Q(pk__in=[])
    return DeadLetter.objects.filter(about_jobs | holding_number)


def guests_forget(*, guests: QuerySet[Guest], actor: Any, via: str, reason: str = "") -> list[ForgetOutcome]:
    """:func:`guest_forget` for each guest (the admin action: the queryset is already the user's scope)."""
    return [
        guest_forget(guest=g, actor=actor, via=via, reason=reason) for g in guests.select_related("hotel")
    ]
