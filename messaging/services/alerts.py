"""Staff alerts about guests left without an answer: a dead reply, a wait past the SLA, or a guest
the bot handed to staff (docs/handoff.md).

One mail per event to the hotel's ``staff_email`` (when set) and to ``ADMINS`` (``mail_admins``),
saying which hotel, which guest (name and chat id masked to its last 4 digits), what they asked,
why no answer went out, and where to answer by hand. Phone numbers and tokens never appear in full.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import mail_admins, send_mail
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from messaging import selectors
from messaging.clients import green_api
from messaging.models import Conversation, Message, ReplyJob, StaffEvent
from messaging.services import staff_events
from reliability import masking
from reliability.fields import plaintexts
from reliability.masking import storable_text
from reliability.models import DeadLetter

logger = logging.getLogger(__name__)

#: Jobs whose guest wrote longer ago than this are not flagged any more (a first deployment, or a
#: long outage of the beat, must not mail about every old job at once).
SLA_LOOKBACK = timedelta(hours=24)


def absolute_url(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def reply_job_links(job_id: int, inbound_id: int) -> list[tuple[str, str]]:
    """Admin pages of a reply job (relative URLs): the job, the guest's message, answer by hand."""
    return [
        ("Reply job", reverse("admin:messaging_replyjob_change", args=[job_id])),
        ("Guest message", reverse("admin:messaging_message_change", args=[inbound_id])),
        ("Answer by hand", reverse("admin:messaging_replyjob_answer", args=[job_id])),
    ]


@dataclass(frozen=True, slots=True)
class Alert:
    subject: str
    body: str
    recipients: list[str]


#: A mail quotes at most this many of a burst's messages (the latest) and this many characters.
QUOTE_MAX_MESSAGES = 10
QUOTE_MAX_CHARS = 2000


def _quoted(messages: list[Message]) -> list[str]:
    """The lines quoting the guest's messages the job answers (a burst: every one, oldest first),
    bounded: the latest :data:`QUOTE_MAX_MESSAGES`, :data:`QUOTE_MAX_CHARS` characters in all (the
    latest kept whole first); what is left out is said."""
    texts = [m.text.strip() or f"[{m.message_type}]" for m in messages]
    kept: list[str] = []
    budget = QUOTE_MAX_CHARS
    for text in reversed(texts[-QUOTE_MAX_MESSAGES:]):
        if budget <= 0:
            break
        kept.append(text if len(text) <= budget else text[: budget - 1] + "…")
        budget -= len(kept[-1])
    kept.reverse()
    lines = [
        "Their message:" if len(texts) == 1 else f"Their {len(texts)} messages (one burst, oldest first):"
    ]
    if len(texts) > len(kept):
        lines.append(f"  ({len(texts) - len(kept)} earlier not shown: the staff inbox has them all)")
    for n, text in enumerate(kept):
        lines += [*(["  >"] if n else []), *(f"  > {line}" for line in text.splitlines())]
    return lines


def _compose(job: ReplyJob, *, headline: str, why: list[str], letter: DeadLetter | None) -> Alert:
    conversation = job.inbound.conversation
    hotel, guest = conversation.hotel, conversation.guest
    secrets = plaintexts(hotel)
    guest_line = f"{guest.display_name or 'guest'} ({masking.mask_chat_id(guest.chat_id)})"
    received = job.inbound.created_at
    lines = [
        headline,
        "",
        f"Hotel: {hotel.name}",
        f"Guest: {guest_line}",
        f"Received: {received:%Y-%m-%d %H:%M:%S} UTC",
        *_quoted(selectors.burst_messages(job=job)),
        "",
        "Why no answer went out:",
        *(f"  {line}" for line in why),
        "",
        f"Answer by hand: {absolute_url(reverse('admin:messaging_replyjob_answer', args=[job.pk]))}",
        f"Reply job: {absolute_url(reverse('admin:messaging_replyjob_change', args=[job.pk]))}",
    ]
    if letter is not None:
        lines.append(
            f"Dead letter: {absolute_url(reverse('admin:reliability_deadletter_change', args=[letter.pk]))}"
        )
    body = storable_text(green_api.mask_token("\n".join(lines)), secrets=secrets)
    # A guest's own number in their own question is theirs to write, not ours to forward in full.
    number = guest.chat_id.partition("@")[0]
    if len(number) > masking.KEEP:
        body = body.replace(number, masking.mask_number(number))
    subject = f"{headline} ({hotel.name}, {masking.mask_chat_id(guest.chat_id)})"
    return Alert(
        subject=subject[:180], body=body, recipients=[hotel.staff_email] if hotel.staff_email else []
    )


def _send(alert: Alert) -> None:
    if alert.recipients:
        send_mail(alert.subject, alert.body, None, alert.recipients)
    mail_admins(alert.subject, alert.body)


def _job(job_id: int | None) -> ReplyJob | None:
    if job_id is None:
        return None
    return (
        ReplyJob.objects.select_related("inbound__conversation__hotel", "inbound__conversation__guest")
        .filter(pk=job_id)
        .first()
    )


def dead_reply_alert_send(*, letter: DeadLetter) -> bool:
    """Mail staff that a reply died (the dead-letter handler's ``alert``). False if the job is gone."""
    job = _job(letter.subject_id)
    if job is None:
        return False
    why = [
        f"Category: {letter.get_category_display()}"
        + (" (needs a human: a retry cannot fix it)" if letter.status == DeadLetter.Status.MANUAL else ""),
        f"Reason: {letter.reason}",
    ]
    if letter.error_message:
        why.append(f"Last error: {letter.error_message[:500]}")
    if letter.status == DeadLetter.Status.PENDING and letter.next_redrive_at is not None:
        why.append(f"It will be retried automatically from {letter.next_redrive_at:%H:%M:%S} UTC.")
    _send(_compose(job, headline="A guest's reply failed", why=why, letter=letter))
    return True


def reply_jobs_flag_sla(*, now: datetime | None = None, limit: int = 200) -> int:
    """Beat task: mail staff once per job about guests waiting longer than ``REPLY_SLA_SECONDS``
    without any answer (job not done). Jobs whose open dead letter already alerted staff are left
    out (they were told). Returns how many jobs were flagged."""
    now = now or timezone.now()
    alerted_letter = DeadLetter.objects.filter(
        subject_type="messaging.replyjob",
        subject_id=OuterRef("pk"),
        status__in=DeadLetter.OPEN_STATUSES,
        alerted_at__isnull=False,
    )
    waiting = (
        ReplyJob.objects.filter(
            sla_alerted_at__isnull=True,
            inbound__created_at__lte=now - timedelta(seconds=settings.REPLY_SLA_SECONDS),
            inbound__created_at__gte=now - SLA_LOOKBACK,
        )
        .exclude(status__in=[ReplyJob.Status.DONE, ReplyJob.Status.SUPERSEDED])
        .exclude(kind=ReplyJob.Kind.STAFF)  # the bot's replies: staff answer the guest otherwise
        .exclude(Exists(alerted_letter))
        .order_by("inbound__created_at")
        .values_list("pk", flat=True)[:limit]
    )

    def alert(job: ReplyJob) -> Alert:
        waited = int((now - job.inbound.created_at).total_seconds() // 60)
        why = [
            f"Waiting {waited} min (the limit is {settings.REPLY_SLA_SECONDS / 60:g} min); "
            f"the reply job is {job.get_status_display()} after {job.attempts} attempt(s).",
        ]
        if job.last_error:
            why.append(f"Last error: {storable_text(job.last_error[:500])}")
        return _compose(job, headline="A guest is waiting for an answer", why=why, letter=None)

    return sum(_mail_once(job_id, now, alert) for job_id in list(waiting))


def _mail_once(job_id: int, now: datetime, alert: Callable[[ReplyJob], Alert | None]) -> bool:
    """Mail ``alert(job)`` about a reply job once: the job's ``sla_alerted_at`` is the claim."""
    return _claim_mail_unclaim(
        ReplyJob.objects.filter(pk=job_id),
        Q(sla_alerted_at__isnull=True),
        claimed={"sla_alerted_at": now},
        unclaimed={"sla_alerted_at": None},
        alert=lambda: None if (job := _job(job_id)) is None else alert(job),
        what=f"reply job {job_id}",
    )


def _claim_mail_unclaim(
    row: QuerySet[Any],
    unclaimed_now: Q,
    *,
    claimed: dict[str, Any],
    unclaimed: dict[str, Any],
    alert: Callable[[], Alert | None],
    what: str,
) -> bool:
    """Mail ``alert()`` once about the one row of ``row``: it is claimed first (``claimed``, one
    UPDATE conditional on ``unclaimed_now``: two beats never mail the same thing twice) and set back
    (``unclaimed``) when the mail fails (tried again next run). ``alert`` may return None: nothing
    to say (the claim stays)."""
    if not row.filter(unclaimed_now).update(**claimed):
        return False
    composed = alert()
    if composed is None:
        return False
    try:
        _send(composed)
    except Exception:
        logger.exception("%s: alert mail failed", what)
        row.update(**unclaimed)
        return False
    return True


def handoffs_flag(*, now: datetime | None = None, limit: int = 200) -> int:
    """Beat task (with the SLA check): mail staff once per handoff that a guest waits for a person —
    the bot told them so (a ``handoff`` job) and nobody else is told otherwise. The job's
    ``sla_alerted_at`` is the flag (claimed by one conditional UPDATE, so two beats never mail twice,
    and cleared again when the mail fails). A conversation staff took meanwhile needs no mail.
    Returns how many were mailed."""
    now = now or timezone.now()
    handoffs = (
        ReplyJob.objects.filter(
            kind=ReplyJob.Kind.HANDOFF, sla_alerted_at__isnull=True, created_at__gte=now - SLA_LOOKBACK
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )

    def alert(job: ReplyJob) -> Alert | None:
        conversation = job.inbound.conversation
        if conversation.owner != Conversation.Owner.WAITING:
            return None  # staff took it, or it was handed back: nobody needs telling
        why = [
            f"The bot handed this guest to staff: {conversation.get_owner_reason_display()}.",
            "They were told a member of staff will answer them here; the bot stays silent meanwhile.",
            "Answer in the staff inbox: "
            + absolute_url(reverse("admin:inbox_conversation", args=[conversation.pk])),
            "(or by hand below, or from the hotel's WhatsApp phone).",
        ]
        return _compose(job, headline="A guest is waiting for a person", why=why, letter=None)

    return sum(_mail_once(job_id, now, alert) for job_id in list(handoffs))


#: Conversations waiting longer than this are not re-alerted any more (a first deployment, or a long
#: outage of the beat, must not mail about every old one at once); a week spans any closed weekend.
OVERDUE_LOOKBACK = timedelta(days=7)
#: Not re-alerted since its latest handoff (a new handoff makes ``owner_since`` newer than the flag).
NOT_REALERTED = Q(staff_realerted_at__isnull=True) | Q(staff_realerted_at__lt=F("owner_since"))


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"


def handoffs_flag_overdue(*, now: datetime | None = None) -> int:
    """Beat task (with the SLA check): a guest waiting for staff longer than their hotel's
    ``handoff_target_minutes``, counted while reception is open (``selectors.conversations_waiting``,
    the one waiting time), is alerted again: a mail, and the ``handoff_overdue`` webhook event.
    Once per conversation and handoff: ``staff_realerted_at`` (set after ``owner_since``) is the
    claim, set back when the mail fails. Returns how many were mailed."""
    now = now or timezone.now()
    candidates = Conversation.objects.filter(NOT_REALERTED, owner_since__gte=now - OVERDUE_LOOKBACK)
    mailed = 0
    for waiting in selectors.conversations_waiting(now=now, among=candidates):
        if waiting.past_target:
            mailed += _realert(waiting, now)
    return mailed


def _realert(waiting: selectors.Waiting, now: datetime) -> bool:
    row = Conversation.objects.filter(pk=waiting.conversation_id)
    before = row.values_list("staff_realerted_at", flat=True).first()

    def alert() -> Alert | None:
        conversation = Conversation.objects.select_related("hotel", "guest").get(pk=waiting.conversation_id)
        with transaction.atomic():
            staff_events.staff_event_record(
                conversation=conversation,
                event=StaffEvent.Event.HANDOFF_OVERDUE,
                now=now,
                waiting_seconds=waiting.waiting_seconds,
            )
        job = (
            ReplyJob.objects.select_related("inbound__conversation__hotel", "inbound__conversation__guest")
            .filter(inbound__conversation_id=waiting.conversation_id)
            .exclude(kind=ReplyJob.Kind.STAFF)
            .order_by("-pk")
            .first()
        )
        if job is None:
            return None
        why = [
            f"Still nobody answered: waiting {_minutes(waiting.waiting_seconds)} while reception was open "
            f"(the hotel's target is {_minutes(waiting.target_seconds)}), "
            f"since {waiting.since:%Y-%m-%d %H:%M} UTC.",
            f"Why they wait: {conversation.get_owner_reason_display()}.",
            "Answer by hand (below), or write from the hotel's WhatsApp phone.",
        ]
        return _compose(job, headline="A guest is still waiting for a person", why=why, letter=None)

    return _claim_mail_unclaim(
        row,
        Q(owner=Conversation.Owner.WAITING, owner_since=waiting.since) & NOT_REALERTED,
        claimed={"staff_realerted_at": now},
        unclaimed={"staff_realerted_at": before},
        alert=alert,
        what=f"conversation {waiting.conversation_id}",
    )


def staff_alerts_run(*, now: datetime | None = None) -> int:
    """The staff alerts' beat task (every ``REPLY_SLA_CHECK_INTERVAL``): the SLA mails, the handoff
    mails, the re-alerts past the target, then the webhook events (after the mails: a slow
    endpoint never delays one). Returns how many mails went out."""
    now = now or timezone.now()
    mailed = reply_jobs_flag_sla(now=now) + handoffs_flag(now=now) + handoffs_flag_overdue(now=now)
    staff_events.staff_events_deliver()
    return mailed


@dataclass(frozen=True, slots=True)
class AlertTestResult:
    backend: str
    admins: list[str]
    hotel_staff: list[str]
    sent: int


def alert_recipients_list() -> tuple[list[str], list[str]]:
    """(ADMINS addresses, distinct hotel staff_email addresses): everyone an alert can reach."""
    from messaging.models import Hotel

    admins = [address for _name, address in settings.ADMINS]
    staff = sorted(set(Hotel.objects.exclude(staff_email="").values_list("staff_email", flat=True)))
    return admins, staff


def alert_test_send(*, dry_run: bool = False) -> AlertTestResult:
    """Send one test mail through the configured backend to ADMINS and to every hotel's staff_email
    (``manage.py send_test_alert``); raises the backend's error (an SMTP refusal, a timeout)."""
    from django.core.mail import get_connection

    admins, staff = alert_recipients_list()
    backend = str(settings.EMAIL_BACKEND)
    sent = 0
    if not dry_run and (admins or staff):
        body = (
            "This is a test alert from hotelbot (manage.py send_test_alert).\n\n"
            "If you read it, alerts about guests left without an answer, open breakers and degradation "
            f"reach you. Sent from {settings.SITE_URL}."
        )
        with get_connection(fail_silently=False) as connection:
            if admins:
                sent += send_mail(
                    f"{settings.EMAIL_SUBJECT_PREFIX}Test alert (ADMINS)",
                    body,
                    settings.SERVER_EMAIL,
                    admins,
                    connection=connection,
                )
            if staff:
                sent += send_mail(
                    "[hotelbot] Test alert (hotel staff)", body, None, staff, connection=connection
                )
    return AlertTestResult(backend=backend, admins=admins, hotel_staff=staff, sent=sent)
