"""Who answers a conversation: the bot, nobody yet (waiting for staff) or staff (docs/handoff.md).

The owner lives on the conversation row; every change of it locks that row first, so two changes
of one conversation are serialised. **The takeover rule** (staff take a conversation any way: in
the console, by replying, or from the hotel's own WhatsApp phone; and the bot itself asking for a
person): in the same transaction as the owner change, every unsent bot job of the guest (an
``answer`` or ``handoff`` job pending, in progress or parked) whose send has not started
(``send_started_at IS NULL``) is closed as ``superseded`` and loses its fencing token, so a worker
still generating it stops at its next fenced write (``LeaseLost``) and never sends; its pending
outbound message (if one was made) is marked failed, "not sent: staff took over". A send already
started is left to finish: it may have gone out. The pipeline's fence right before a send also
requires the owner (``replies``), so a job that slips between the two never sends either.

Staff actions are audited (``reliability.audit``, tenant = the hotel's id) and scoped to the
hotels the actor staffs (``hotels_visible_to``), as answering by hand is (``manual``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from hotelbot.exceptions import NotFound, ValidationFailed
from messaging.models import Conversation, Message, ReplyJob, StaffEvent
from messaging.selectors import hotels_visible_to
from messaging.services import staff_events
from reliability.audit import audit_record
from reliability.metrics import FIRST_HUMAN_REPLY, HANDOFFS

Owner = Conversation.Owner
Reason = Conversation.OwnerReason

#: The bot's own jobs: closed by a takeover. A ``staff`` job (or a job answered by hand) never is.
BOT_KINDS = (ReplyJob.Kind.ANSWER, ReplyJob.Kind.HANDOFF)
#: Statuses of a job that may still send.
UNSENT = (ReplyJob.Status.PENDING, ReplyJob.Status.IN_PROGRESS, ReplyJob.Status.PENDING_PROVIDER_RECOVERY)
#: The status detail of a superseded job's outbound message that never left.
NOT_SENT_DETAIL = "not sent: staff took over"
HELD_DETAIL = "not sent: written while staff held the conversation"
#: Green API's sendMessage accepts at most this many characters.
MAX_TEXT = 20000


def staff_text_clean(text: str, *, what: str = "message", limit: int = MAX_TEXT) -> str:
    """A text staff wrote (for a guest, or a note), stripped; ValidationFailed when empty or longer
    than ``limit`` (for a guest: what Green API sends)."""
    text = text.strip()
    if not text:
        raise ValidationFailed(f"Write the {what}.", details={"text": "Required."})
    if len(text) > limit:
        raise ValidationFailed(
            f"The {what} is longer than {limit} characters.", details={"text": "Too long."}
        )
    return text


def bot_answers_q(now: datetime) -> Q:
    """Conversations the bot answers (``Conversation.bot_answers``, as a filter)."""
    return (
        Q(owner=Owner.BOT)
        | Q(owner=Owner.STAFF, owner_until__lte=now)
        | Q(owner=Owner.WAITING, owner_reason=Reason.DEAD_REPLY)
    )


def guest_bot_jobs_supersede(
    *,
    guest_id: int,
    now: datetime,
    keep_job_id: int | None = None,
    before_job_id: int | None = None,
    detail: str = NOT_SENT_DETAIL,
) -> list[int]:
    """The takeover rule (module docstring), inside the caller's transaction: close every unsent bot
    job of the guest whose send has not started, except ``keep_job_id`` (and only those of earlier
    messages than ``before_job_id``: an opt-out leaves the guest's later messages be); returns
    their ids. ``detail``: why, on the jobs and their unsent messages.

    The rows are locked first (``FOR UPDATE`` re-reads a row a concurrent fence just changed), so
    a job whose ``send_started_at`` was committed meanwhile is left to finish."""
    jobs = (
        ReplyJob.objects.select_for_update(of=("self",))
        .filter(
            inbound__conversation__guest_id=guest_id,
            kind__in=BOT_KINDS,
            status__in=UNSENT,
            send_started_at__isnull=True,
            manual_at__isnull=True,
        )
        .order_by("pk")
    )
    if keep_job_id is not None:
        jobs = jobs.exclude(pk=keep_job_id)
    if before_job_id is not None:
        jobs = jobs.filter(pk__lt=before_job_id)
    ids = list(jobs.values_list("pk", flat=True))
    if not ids:
        return []
    ReplyJob.objects.filter(pk__in=ids).update(
        status=ReplyJob.Status.SUPERSEDED,
        lease_token="",
        lease_expires_at=None,
        completed_at=now,
        last_error=detail,
        updated_at=now,
    )
    Message.objects.filter(sent_by_job__pk__in=ids, status=Message.Status.PENDING).update(
        status=Message.Status.FAILED, failed_at=now, status_detail=detail
    )
    return ids


def _locked(conversation_id: int, actor: Any = None, *, scoped: bool = False) -> Conversation:
    conversations = Conversation.objects.select_for_update(of=("self",)).select_related("hotel")
    if scoped and actor is not None:
        conversations = conversations.filter(hotel__in=hotels_visible_to(user=actor))
    conversation = conversations.filter(pk=conversation_id).first()
    if conversation is None:
        raise NotFound(f"No conversation {conversation_id}.")
    return conversation


def conversation_audit(conversation: Conversation, actor: Any, via: str, action: str, **details: Any) -> None:
    """The audit row of a staff action on a conversation (tenant: its hotel)."""
    audit_record(
        actor=actor,
        via=via,
        action=f"conversation.{action}",
        target=conversation,
        tenant=str(conversation.hotel_id),
        details=details,
    )


def _owner_set(
    conversation: Conversation,
    *,
    owner: str,
    reason: str,
    now: datetime,
    user: Any = None,
    until: datetime | None = None,
    **extra: Any,
) -> None:
    authenticated = user is not None and getattr(user, "is_authenticated", False)
    fields = {
        "owner": owner,
        "owner_reason": reason,
        "owner_since": now,
        "owner_user": user if authenticated else None,
        "owner_until": until,
        **extra,
    }
    Conversation.objects.filter(pk=conversation.pk).update(**fields)
    for name, value in fields.items():
        setattr(conversation, name, value)


def _staff_take(conversation: Conversation, *, actor: Any, reason: str, now: datetime) -> list[int]:
    """Owner staff (held until handed back) and the takeover rule; the conversation row is locked."""
    _owner_set(conversation, owner=Owner.STAFF, reason=reason, now=now, user=actor)
    return guest_bot_jobs_supersede(guest_id=conversation.guest_id, now=now)


def conversation_take(*, conversation_id: int, actor: Any, via: str) -> Conversation:
    """Staff take the conversation: the bot stops answering the guest until it is handed back, and
    its unsent replies are closed (the takeover rule). Audited as ``conversation.take``."""
    now = timezone.now()
    with transaction.atomic():
        conversation = _locked(conversation_id, actor, scoped=True)
        previous = conversation.owner
        superseded = _staff_take(conversation, actor=actor, reason=Reason.STAFF_TOOK, now=now)
        conversation_audit(
            conversation, actor, via, "take", previous_owner=previous, superseded_jobs=superseded
        )
    return conversation


def conversation_hand_back(*, conversation_id: int, actor: Any, via: str) -> Conversation:
    """Staff hand the conversation back: the bot answers the guest's next messages. What it closed
    stays closed, and so do the bot's replies still unsent to messages written before the hand-back
    (staff held them: a job still in its burst window would otherwise be answered by the bot after
    staff answered it). Audited as ``conversation.hand_back``."""
    now = timezone.now()
    with transaction.atomic():
        conversation = _locked(conversation_id, actor, scoped=True)
        previous = conversation.owner
        _owner_set(conversation, owner=Owner.BOT, reason=Reason.HANDED_BACK, now=now, user=actor)
        if previous != Owner.BOT:
            guest_bot_jobs_supersede(guest_id=conversation.guest_id, now=now, detail=HELD_DETAIL)
        conversation_audit(conversation, actor, via, "hand_back", previous_owner=previous)
    return conversation


def conversation_request_staff(
    *, conversation: Conversation, reason: str, keep_job_id: int | None = None
) -> bool:
    """The bot hands the guest to staff: the owner becomes ``waiting`` with ``reason``, and the
    guest's other unsent bot replies are closed (the takeover rule; ``keep_job_id``: the job that
    carries the one notice). False (nothing changed) when the bot does not answer this guest now:
    someone asked for staff already, or staff hold the conversation.

    A dead reply (``reason`` ``dead_reply``) only flags the conversation: the guest was told
    nothing, so the bot's other replies go on (the conversation stays the bot's to answer)."""
    now = timezone.now()
    with transaction.atomic():
        locked = _locked(conversation.pk)
        if not locked.bot_answers(now) or (reason == Reason.DEAD_REPLY and locked.owner == Owner.WAITING):
            return False
        # A new handoff: its clock starts (the first staff reply is looked for after it).
        _owner_set(locked, owner=Owner.WAITING, reason=reason, now=now, handoff_at=now, staff_replied_at=None)
        if reason != Reason.DEAD_REPLY:
            guest_bot_jobs_supersede(guest_id=locked.guest_id, now=now, keep_job_id=keep_job_id)
        staff_events.staff_event_record(conversation=locked, event=StaffEvent.Event.HANDOFF, now=now)
        transaction.on_commit(HANDOFFS.labels(reason).inc)
    conversation.owner, conversation.owner_reason = locked.owner, locked.owner_reason
    return True


def conversation_staff_phone(*, conversation: Conversation, now: datetime) -> list[int]:
    """Staff wrote to the guest from the hotel's own phone (inside the intake's transaction): the
    owner becomes ``staff`` until ``now + hotel.staff_hold_minutes`` (a hold without end, taken in
    the console, stays as it is) and the takeover rule closes the bot's unsent replies."""
    locked = _locked(conversation.pk)
    if not (locked.owner == Owner.STAFF and locked.owner_until is None):
        until = now + timedelta(minutes=locked.hotel.staff_hold_minutes)
        _owner_set(locked, owner=Owner.STAFF, reason=Reason.STAFF_PHONE, now=now, until=until)
    waited = conversation_staff_replied(conversation_id=locked.pk, at=now)
    if waited is not None:
        transaction.on_commit(partial(FIRST_HUMAN_REPLY.observe, waited))
    return guest_bot_jobs_supersede(guest_id=locked.guest_id, now=now)


def conversation_staff_replied(*, conversation_id: int, at: datetime) -> float | None:
    """A staff message reached the guest at ``at`` (sent from the hotel's phone, or a staff reply
    or answer by hand accepted by Green API): the first one after the conversation's handoff is
    noted (``staff_replied_at``, one conditional UPDATE: a later message, or a second worker,
    changes nothing). Returns the seconds since the handoff for that first one, else None (the
    caller observes ``hotelbot_first_human_reply_seconds`` once the write is committed)."""
    first = Conversation.objects.filter(
        pk=conversation_id, handoff_at__isnull=False, handoff_at__lte=at, staff_replied_at__isnull=True
    )
    handoff_at = first.values_list("handoff_at", flat=True).first()
    if handoff_at is None or not first.filter(handoff_at=handoff_at).update(staff_replied_at=at):
        return None
    return max(0.0, (at - handoff_at).total_seconds())


def staff_reply_queue(
    *, conversation_id: int, text: str, actor: Any, via: str, request_key: str | None = None
) -> ReplyJob:
    """Queue a message written by staff to the conversation's guest; returns its reply job.

    A ``staff`` job on the guest's latest message, the text as its reply, due now and published on
    commit: it goes out through the reply pipeline (claim, fencing, reconcile, the guest's order,
    the dead letter), exactly once. The same ``request_key`` (a double submit) queues it once: the
    second call returns the first job. Staff replying take the conversation (the takeover rule).
    Audited as ``conversation.staff_reply``."""
    from messaging.services import replies  # the pipeline imports this module

    text = staff_text_clean(text)
    key = (request_key or "").strip()[:64] or None
    if key is not None and (existing := _by_request_key(key, conversation_id, actor)) is not None:
        return existing
    now = timezone.now()
    try:
        with transaction.atomic():
            conversation = _locked(conversation_id, actor, scoped=True)
            inbound = (
                Message.objects.filter(conversation=conversation, direction=Message.Direction.INBOUND)
                .order_by("-pk")
                .first()
            )
            if inbound is None:
                raise ValidationFailed("The guest has not written in this conversation yet.")
            if conversation.owner != Owner.STAFF or conversation.owner_until is not None:
                superseded = _staff_take(conversation, actor=actor, reason=Reason.STAFF_TOOK, now=now)
            else:
                superseded = guest_bot_jobs_supersede(guest_id=conversation.guest_id, now=now)
            job = ReplyJob.objects.create(
                inbound=inbound,
                kind=ReplyJob.Kind.STAFF,
                reply_text=text,
                next_attempt_at=now,
                request_key=key,
            )
            conversation_audit(
                conversation,
                actor,
                via,
                "staff_reply",
                job=job.pk,
                request_key=key,
                superseded_jobs=superseded,
                text=text[:500],
            )
            replies.reply_job_enqueue_on_commit(job_id=job.pk)
    except IntegrityError:
        # The same request_key committed in between (a double submit racing this one).
        if key is None:
            raise
        existing = _by_request_key(key, conversation_id, actor)
        if existing is None:
            raise ValidationFailed(
                "This request key was used for another message.", details={"request_key": "Already used."}
            ) from None
        return existing
    return job


def _by_request_key(key: str, conversation_id: int, actor: Any) -> ReplyJob | None:
    jobs = ReplyJob.objects.filter(request_key=key, inbound__conversation_id=conversation_id)
    if actor is not None:
        jobs = jobs.filter(inbound__conversation__hotel__in=hotels_visible_to(user=actor))
    return jobs.first()
