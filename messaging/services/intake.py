"""Writes for webhook intake: inbound messages, delivery statuses, send journal, instance state.

Acknowledge, then quarantine: Green API delivers in order and resends a notification after any
non-200, so one bad notification would hold every later message of its hotel for up to 24 h.
Whatever cannot be parsed or stored (a bad body, an unknown instance, a storage error on
valid-looking input) becomes a ``webhook_quarantine`` dead letter and is answered 200. Only an
unavailable database (OperationalError/InterfaceError) propagates, so the view answers 503 and
Green API redelivers.

Every check-then-write here is either one conditional write or treats its IntegrityError as the
duplicate it is (a concurrent delivery or a worker got there first), never as a 500.

Per hotel (many hotels, one deployment): a notification acts only on the rows of the hotel its
``idInstance`` resolves to (the webhook has checked that its token belongs to that hotel). A
redelivery is recognised by (hotel, direction, idMessage), as the database's unique key says
(``Message.hotel`` is the conversation's hotel, copied on every message): hotel B's message whose
id hotel A already has is stored and answered. Statuses, journal entries and state changes match
only the reporting hotel's rows (``statuses``).

Per guest: a guest's messages arriving at once land in one conversation, whichever path stores
them. The ORM path's transaction starts with the guest's upsert, which holds the guest's row lock
(PostgreSQL) or the database's write lock (SQLite, ``transaction_mode`` IMMEDIATE) until it
commits, so the next message of that guest chooses its conversation after the previous one's is
visible. The one-statement path takes a lock per guest first (``inbound_sql``).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, connection, transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from messaging.models import Conversation, Guest, Hotel, Message, ReplyJob
from messaging.notifications import (
    Ignored,
    IncomingMessage,
    Notification,
    OutgoingApiMessage,
    OutgoingPhoneMessage,
    OutgoingStatus,
    RawBody,
    Reason,
    StateChanged,
    Unparseable,
)
from messaging.services import bursts, handoff, inbound_sql, replies, statuses
from messaging.services.statements import column, own_transaction
from reliability.dead_letters import dead_letter_quarantine
from reliability.metrics import REPLIES, WEBHOOK_QUARANTINED
from reliability.models import DeadLetter

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IngestResult:
    action: str  # "stored", "duplicate", "status_updated", "quarantined", "ignored", ...
    message_id: int | None = None
    dead_letter_id: int | None = None


def notification_ingest(
    *, notification: Notification | Unparseable, body: RawBody | None = None
) -> IngestResult:
    """The webhook's one call: route a parsed notification to the write it needs, or quarantine it.

    Never raises for bad input; raises only when the database itself is unavailable. A notification
    whose free text was cleaned (NUL, lone surrogates → U+FFFD: ``cleaned``) is stored and answered
    like any other, and its original body is kept for staff (:func:`cleaned_original_keep`).
    """
    result = _notification_route(notification=notification, body=body)
    cleanable = IncomingMessage | OutgoingStatus | OutgoingApiMessage | OutgoingPhoneMessage
    if isinstance(notification, cleanable) and notification.cleaned and result.action not in NOT_PROCESSED:
        cleaned_original_keep(notification=notification, body=body, result=result)
    return result


def _notification_route(*, notification: Notification | Unparseable, body: RawBody | None) -> IngestResult:
    if isinstance(notification, Unparseable):
        return notification_quarantine(
            body=body,
            reason=notification.reason,
            message=notification.message,
            details=notification.details,
            payload=notification.payload,
            subject=notification.subject,
            tenant=_tenant_of_instance(notification.subject),
        )
    if isinstance(notification, Ignored):
        return IngestResult(action="ignored")
    if (
        isinstance(notification, IncomingMessage)
        and not _group_chat(notification)
        and inbound_sql.available()
    ):
        return _guest_message_ingest(incoming=notification, body=body)
    if isinstance(notification, OutgoingApiMessage | OutgoingStatus | StateChanged):
        return _hotel_id_route(notification=notification, body=body)
    hotel, stored_as = _hotel_and_stored_message(notification)
    if hotel is None:
        return _unknown_instance_quarantine(body=body, id_instance=notification.id_instance)
    try:
        # Every route writes in one transaction of its own (a savepoint inside a caller's): a failed
        # INSERT is rolled back before the quarantine row is written, and nothing of a half-stored
        # notification remains. (No transaction around them here: it would only add a savepoint
        # and its release, two round trips, to each.)
        return _route(hotel=hotel, notification=notification, stored_as=stored_as)
    except (DataError, IntegrityError, UnicodeError) as e:
        return _storage_error_quarantine(body=body, notification=notification, error=e, tenant=str(hotel.pk))


def _unknown_instance_quarantine(*, body: RawBody | None, id_instance: str) -> IngestResult:
    return notification_quarantine(
        body=body,
        reason=Reason.UNKNOWN_INSTANCE,
        message=f"No hotel is configured for Green API instance {id_instance}.",
        subject=id_instance,
    )


def _storage_error_quarantine(
    *,
    body: RawBody | None,
    notification: IncomingMessage | OutgoingStatus | OutgoingApiMessage | OutgoingPhoneMessage | StateChanged,
    error: Exception,
    tenant: str,
) -> IngestResult:
    """Valid-looking input the database refused (a length or encoding it would not take)."""
    name = type(notification).__name__
    logger.warning("notification %s could not be stored: %s", name, type(error).__name__)
    return notification_quarantine(
        body=body,
        reason=Reason.STORAGE_ERROR,
        message=f"The database refused the notification ({type(error).__name__}).",
        subject=notification.id_instance,
        tenant=tenant,
    )


def _group_chat(incoming: IncomingMessage) -> bool:
    return incoming.chat_id.endswith("@g.us")


def _guest_message_ingest(*, incoming: IncomingMessage, body: RawBody | None) -> IngestResult:
    """A guest message on PostgreSQL: the hotel lookup, the redelivery check and every write of
    ``inbound_message_record`` in one statement (``inbound_sql``), then the job's publish."""
    now = timezone.now()
    guest, message = _inbound_rows(incoming=incoming, now=now)
    job = replies.reply_job_unsaved(now=now)
    try:
        with own_transaction():
            written = inbound_sql.inbound_message_insert(
                id_instance=incoming.id_instance,
                guest=guest,
                message=message,
                job=job,
                idle_since=_idle_since(now),
                now=now,
            )
    except (DataError, IntegrityError, UnicodeError) as e:
        # IntegrityError: a concurrent delivery of the same idMessage won the insert, or a refusal.
        if isinstance(e, IntegrityError) and (existing := _inbound_stored_as(incoming)):
            return IngestResult(action="duplicate", message_id=existing)
        tenant = _tenant_of_instance(incoming.id_instance)
        return _storage_error_quarantine(body=body, notification=incoming, error=e, tenant=tenant)
    if written.hotel_id is None:
        return _unknown_instance_quarantine(body=body, id_instance=incoming.id_instance)
    if written.stored_as is not None:
        return IngestResult(action="duplicate", message_id=written.stored_as)
    job.pk = written.job_id
    if written.job_due is not None:
        job.next_attempt_at = written.job_due
    if written.merged_id is not None:
        bursts.merged_on_commit()
    replies.reply_job_publish_on_commit(job)
    return IngestResult(action="stored", message_id=written.message_id)


def _inbound_rows(*, incoming: IncomingMessage, now: datetime) -> tuple[Guest, Message]:
    """The guest and message rows a guest message writes, unsaved and unlinked (both intake paths
    link and save them, with the message's reply job)."""
    guest = Guest(chat_id=incoming.chat_id, display_name=incoming.sender_name, last_seen_at=now)
    message = Message(
        direction=Message.Direction.INBOUND,
        text=incoming.text,
        message_type=incoming.type_message,
        provider_message_id=incoming.id_message,
        status=Message.Status.RECEIVED,
        provider_timestamp=incoming.timestamp,
    )
    return guest, message


def _inbound_stored_as(incoming: IncomingMessage) -> int | None:
    """The inbound row stored under this idMessage for the hotel of this instance, if any."""
    return _stored_as(
        Message.objects.filter(hotel__green_api_instance_id=incoming.id_instance),
        Message.Direction.INBOUND,
        incoming.id_message,
    )


def _stored_as(messages: QuerySet[Message], direction: str, id_message: str) -> int | None:
    """The id of the row of ``messages`` stored under (direction, idMessage), if any."""
    stored = messages.filter(direction=direction, provider_message_id=id_message)
    return stored.values_list("pk", flat=True).first()


def _idle_since(now: datetime) -> datetime:
    """A conversation silent since before this is over: the guest's next message starts a new one."""
    return now - timedelta(hours=settings.CONVERSATION_IDLE_HOURS)


def _hotel_id_route(
    *, notification: OutgoingApiMessage | OutgoingStatus | StateChanged, body: RawBody | None
) -> IngestResult:
    """The notifications that need only their hotel's id (a journal entry, a status, a state
    change): the id from one plain statement (``_hotel_id_sql``) instead of the whole Hotel row
    through the ORM, and for a journal entry in the same statement whether the hotel already has
    its idMessage (the common case: the send's confirm recorded it first)."""
    journal = notification if isinstance(notification, OutgoingApiMessage) else None
    found = _hotel_id_and_known(id_instance=notification.id_instance, journal=journal)
    if found is None:
        return _unknown_instance_quarantine(body=body, id_instance=notification.id_instance)
    hotel_id, known = found
    try:  # each route writes in one transaction of its own (see _notification_route)
        if journal is not None:
            if known:
                return IngestResult(action="journal_known")
            return outbound_journal_record(hotel_id=hotel_id, journal=journal)
        if isinstance(notification, OutgoingStatus):
            return outbound_status_apply(hotel_id=hotel_id, status=notification)
        assert isinstance(notification, StateChanged)
        return hotel_state_record(hotel_id=hotel_id, state=notification)
    except (DataError, IntegrityError, UnicodeError) as e:
        return _storage_error_quarantine(body=body, notification=notification, error=e, tenant=str(hotel_id))


@functools.cache
def _hotel_id_sql(*, with_journal: bool) -> str:
    """The hotel of an instance and (``with_journal``) whether it has an outbound row of an
    idMessage: written once per process, where the ORM compiled two queries each time."""
    hotel, message = Hotel._meta.db_table, Message._meta.db_table
    h, m = partial(column, Hotel), partial(column, Message)
    qn = connection.ops.quote_name
    known = "NULL"
    if with_journal:
        known = (
            f"EXISTS (SELECT 1 FROM {qn(message)} m WHERE m.{m('hotel')} = h.{h('id')} "  # noqa: S608
            f"AND m.{m('direction')} = %s AND m.{m('provider_message_id')} = %s)"
        )
    # Identifiers from the models, quoted by the backend; every value is a parameter.
    return f"SELECT h.{h('id')}, {known} FROM {qn(hotel)} h WHERE h.{h('green_api_instance_id')} = %s"  # noqa: S608


def _hotel_id_and_known(*, id_instance: str, journal: OutgoingApiMessage | None) -> tuple[int, bool] | None:
    """(hotel id, is the journal entry's idMessage already the hotel's outbound row) of the
    instance's hotel, or None when no hotel has that instance."""
    params: list[str] = [id_instance]
    if journal is not None:
        params = [Message.Direction.OUTBOUND.value, journal.id_message, id_instance]
    with connection.cursor() as cursor:
        cursor.execute(_hotel_id_sql(with_journal=journal is not None), params)
        row = cursor.fetchone()
    return None if row is None else (int(row[0]), bool(row[1]))


def _hotel_and_stored_message(
    notification: IncomingMessage | OutgoingPhoneMessage,
) -> tuple[Hotel | None, int | None]:
    """The hotel of the notification's instance and, for a guest message, the id of that hotel's
    inbound row already stored under its idMessage (a redelivery), in one query."""
    hotels = Hotel.objects.filter(green_api_instance_id=notification.id_instance).order_by()
    if not isinstance(notification, IncomingMessage):
        return hotels.first(), None
    stored = Message.objects.filter(
        hotel=OuterRef("pk"), direction=Message.Direction.INBOUND, provider_message_id=notification.id_message
    ).values("pk")[:1]
    hotel = hotels.annotate(stored_message_id=Subquery(stored)).first()
    return hotel, None if hotel is None else hotel.stored_message_id


def _tenant_of_instance(id_instance: str) -> str:
    """The tenant key (hotel id) of a Green API instance we know, else empty (operations only)."""
    if not (id_instance.isascii() and id_instance.isdigit()):
        return ""
    hotel_id = Hotel.objects.filter(green_api_instance_id=id_instance).values_list("pk", flat=True).first()
    return "" if hotel_id is None else str(hotel_id)


def _route(*, hotel: Hotel, notification: Notification, stored_as: int | None) -> IngestResult:
    if isinstance(notification, IncomingMessage):
        return inbound_message_record(hotel=hotel, incoming=notification, stored_as=stored_as)
    assert isinstance(notification, OutgoingPhoneMessage)
    return outbound_phone_record(hotel=hotel, phone=notification)


def notification_quarantine(
    *,
    body: RawBody | None,
    reason: Reason,
    message: str,
    details: dict[str, str] | None = None,
    payload: object = None,
    subject: str = "",
    tenant: str = "",
) -> IngestResult:
    """Keep a notification we acknowledge but cannot process as a pending dead letter for staff
    (``tenant``: the hotel's id when the instance is a hotel we know)."""
    described = "; ".join(f"{name}: {why}" for name, why in (details or {}).items())
    letter = dead_letter_quarantine(
        kind=DeadLetter.Kind.WEBHOOK_QUARANTINE,
        subject=subject,
        raw=body.data if body is not None else b"",
        raw_size=body.size if body is not None else 0,
        payload=payload,
        reason_code=reason.value,
        reason=f"{message} {described}".strip(),
        secrets=(settings.GREEN_API_WEBHOOK_TOKEN,),
        tenant=tenant,
    )
    WEBHOOK_QUARANTINED.labels(reason=reason.value).inc()
    if isinstance(payload, dict) and payload.get("typeWebhook") == "incomingMessageReceived":
        REPLIES.labels("quarantined").inc()  # a guest message that gets no automatic reply
    return IngestResult(action="quarantined", dead_letter_id=letter.pk)


#: Outcomes of a notification that was not processed now (a redelivery's original was kept the first time).
NOT_PROCESSED = frozenset({"quarantined", "duplicate", "ignored", "ignored_group_chat"})
#: Reason code of the resolved dead letter that keeps a cleaned notification's original body.
TEXT_CLEANED = "text_cleaned"


def cleaned_original_keep(
    *,
    notification: IncomingMessage | OutgoingStatus | OutgoingApiMessage | OutgoingPhoneMessage,
    body: RawBody | None,
    result: IngestResult,
) -> DeadLetter | None:
    """Keep the original body of a notification processed with cleaned free text, for staff: a
    ``webhook_quarantine`` dead letter already resolved (reason ``text_cleaned``), in the hotel's
    scope. A failure to keep it is logged, never raised: the message is stored and answered."""
    fields = ", ".join(notification.cleaned)
    stored = f" (message {result.message_id})" if result.message_id is not None else ""
    try:
        return dead_letter_quarantine(
            kind=DeadLetter.Kind.WEBHOOK_QUARANTINE,
            subject=notification.id_instance,
            raw=body.data if body is not None else b"",
            raw_size=body.size if body is not None else 0,
            reason_code=TEXT_CLEANED,
            reason=f"NUL characters or lone surrogates in {fields} were replaced by U+FFFD; the original "
            "body is kept here.",
            secrets=(settings.GREEN_API_WEBHOOK_TOKEN,),
            tenant=_tenant_of_instance(notification.id_instance),
            resolution=f"cleaned and processed: {result.action}{stored}",
        )
    except DatabaseError as e:
        logger.warning("the original of a cleaned notification was not kept: %s", type(e).__name__)
        return None


def _guest_seen(*, hotel: Hotel, guest: Guest) -> Guest:
    """Create the guest or note that they wrote, in one statement (INSERT ... ON CONFLICT DO UPDATE):
    a guest created concurrently by another delivery is updated, never a duplicate or a conflict.
    An empty sender name keeps the name we have."""
    guest.hotel = hotel
    Guest.objects.bulk_create(
        [guest],
        update_conflicts=True,
        unique_fields=["hotel", "chat_id"],
        update_fields=["last_seen_at", "display_name"] if guest.display_name else ["last_seen_at"],
    )
    assert guest.pk is not None  # RETURNING id, also on a conflict (PostgreSQL, SQLite >= 3.35)
    return guest


def _current_conversation(*, hotel: Hotel, guest: Guest, now: datetime) -> Conversation:
    """The guest's conversation (a new one after CONVERSATION_IDLE_HOURS of silence), its
    ``last_message_at`` set to ``now``."""
    conversation = (
        Conversation.objects.filter(guest=guest, last_message_at__gte=_idle_since(now))
        .order_by("-last_message_at")
        .first()
    )
    if conversation is None:
        return Conversation.objects.create(hotel=hotel, guest=guest, last_message_at=now)
    Conversation.objects.filter(pk=conversation.pk).update(last_message_at=now)
    return conversation


def inbound_message_record(*, hotel: Hotel, incoming: IncomingMessage, stored_as: int | None) -> IngestResult:
    """Store the inbound message and its reply job in one transaction (the guest's previous answer
    job still waiting out its burst window merged into it: ``bursts``); a redelivery is a no-op.

    The path of databases without data-modifying CTEs (SQLite, the embedded default; PostgreSQL
    writes the same rows in one statement, ``_guest_message_ingest``) and of group chats.
    ``stored_as``: the hotel's inbound row already stored under this idMessage (its id, or None),
    looked up with the hotel (``_hotel_and_stored_message``). A concurrent delivery of the same
    idMessage that commits in between makes our INSERT fail on the unique constraint: the whole
    transaction is rolled back (so nothing of ours remains) and the answer is "duplicate".
    The guest's upsert comes first: its lock serialises the guest's concurrent messages (module
    docstring), so they choose one conversation.
    """
    if _group_chat(incoming):
        return IngestResult(action="ignored_group_chat")
    if stored_as is not None:
        return IngestResult(action="duplicate", message_id=stored_as)
    now = timezone.now()
    guest, message = _inbound_rows(incoming=incoming, now=now)
    try:
        with transaction.atomic():
            guest = _guest_seen(hotel=hotel, guest=guest)
            message.conversation = _current_conversation(hotel=hotel, guest=guest, now=now)
            message.hotel = hotel
            message.save(force_insert=True)
            replies.reply_job_create(inbound=message, now=now)
    except IntegrityError:
        existing = _inbound_stored_as(incoming)  # a concurrent delivery won the insert
        if existing is None:
            raise
        return IngestResult(action="duplicate", message_id=existing)
    return IngestResult(action="stored", message_id=message.pk)


def outbound_status_apply(*, hotel_id: int, status: OutgoingStatus) -> IngestResult:
    action, message_id = statuses.outbound_status_apply(hotel_id=hotel_id, status=status)
    return IngestResult(action=action, message_id=message_id)


def hotel_state_record(*, hotel_id: int, state: StateChanged) -> IngestResult:
    # One UPDATE: atomic on its own.
    Hotel.objects.filter(pk=hotel_id).update(
        green_api_state=state.state, green_api_state_changed_at=state.timestamp
    )
    return IngestResult(action="state_recorded")


def outbound_journal_record(*, hotel_id: int, journal: OutgoingApiMessage) -> IngestResult:
    """``outgoingAPIMessageReceived``: Green API's own record of a message sent through its API,
    whose idMessage the hotel had no outbound row of when ``_hotel_id_route`` looked.

    If a send of ours is still in doubt for that chat and text, this is its proof of sending; the
    job's next attempt then confirms it instead of sending again. Only the hotel's own messages
    and jobs are looked at and adopted.

    The adoption is one conditional UPDATE in autocommit (``_journal_adopt_sql``: the oldest send
    in doubt for the chat and text gets the idMessage, if it still has none), then the statuses
    deferred for the idMessage are applied after its commit, as the send's confirm does
    (``statuses.deferred_statuses_apply``: a status deferred meanwhile looks again once its own
    row is committed). Only when nothing was adopted does a second read tell "known meanwhile"
    from "not ours".
    """
    params: list[str | int] = [journal.id_message, journal.text, hotel_id, journal.chat_id]
    try:
        with own_transaction(), connection.cursor() as cursor:
            cursor.execute(_journal_adopt_sql(), params)
            row = cursor.fetchone()
    except IntegrityError:
        # A worker gave this idMessage to an outbound row of the hotel first (its send returned,
        # or reconciliation adopted it): the journal entry is known now.
        return IngestResult(action="journal_known")
    if row is None:
        known = Message.objects.filter(
            hotel_id=hotel_id, direction=Message.Direction.OUTBOUND, provider_message_id=journal.id_message
        ).exists()
        return IngestResult(action="journal_known" if known else "journal_unmatched")
    statuses.deferred_statuses_apply(hotel_id=hotel_id, id_message=journal.id_message)
    return IngestResult(action="journal_matched", message_id=int(row[0]))


@functools.cache
def _journal_adopt_sql() -> str:
    """Give an idMessage (%s 1) to the outbound row of the hotel's (%s 3) oldest reply job whose send
    started and is still without one, for the chat (%s 4) and text (%s 2); RETURNING its id.
    Written once per process: the ORM compiled the four-join read anew for every journal entry,
    and the UPDATE was a second statement."""
    qn = connection.ops.quote_name
    j, m, c, g = (partial(column, model) for model in (ReplyJob, Message, Conversation, Guest))
    jobs, messages, conversations, guests = (
        qn(model._meta.db_table) for model in (ReplyJob, Message, Conversation, Guest)
    )
    # Identifiers from the models, quoted by the backend; every value is a parameter.
    in_doubt = (
        f"SELECT j.{j('outbound')} FROM {jobs} j "  # noqa: S608
        f"JOIN {messages} i ON i.{m('id')} = j.{j('inbound')} "
        f"JOIN {conversations} c ON c.{c('id')} = i.{m('conversation')} "
        f"JOIN {guests} g ON g.{g('id')} = c.{c('guest')} "
        f"JOIN {messages} o ON o.{m('id')} = j.{j('outbound')} "
        f"WHERE j.{j('send_started_at')} IS NOT NULL AND j.{j('reply_text')} = %s "
        f"AND c.{c('hotel')} = %s AND g.{g('chat_id')} = %s AND o.{m('provider_message_id')} IS NULL "
        f"ORDER BY j.{j('send_started_at')} LIMIT 1"
    )
    return (
        f"UPDATE {messages} SET {m('provider_message_id')} = %s "  # noqa: S608
        f"WHERE {m('id')} = ({in_doubt}) AND {m('provider_message_id')} IS NULL RETURNING {m('id')}"
    )


def outbound_phone_record(*, hotel: Hotel, phone: OutgoingPhoneMessage) -> IngestResult:
    """``outgoingMessageReceived``: staff wrote to a guest from the hotel's own WhatsApp phone.

    Stored as an outbound message (already sent) of the guest's conversation, in one transaction
    with the takeover: the conversation is staff's for ``hotel.staff_hold_minutes`` (reason
    ``staff_phone``) and the bot's unsent replies to that guest are closed (``handoff``). A
    redelivery (the hotel has this outbound idMessage) is a no-op; a group chat is ignored. A
    guest or conversation the phone starts is created, so the guest's answer is not the bot's.
    """
    if phone.chat_id.endswith("@g.us"):
        return IngestResult(action="ignored_group_chat")
    if (existing := _outbound_stored_as(hotel, phone.id_message)) is not None:
        return IngestResult(action="duplicate", message_id=existing)
    now = timezone.now()
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":  # the one-statement intake's per-guest lock
                key = inbound_sql.guest_lock_key(
                    id_instance=hotel.green_api_instance_id, chat_id=phone.chat_id
                )
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_advisory_xact_lock(%s, %s)", [inbound_sql.GUEST_LOCK_CLASS, key]
                    )
            guest = Guest(hotel=hotel, chat_id=phone.chat_id)
            Guest.objects.bulk_create(
                [guest], update_conflicts=True, unique_fields=["hotel", "chat_id"], update_fields=["chat_id"]
            )
            conversation = _current_conversation(hotel=hotel, guest=guest, now=now)
            conversation.hotel = hotel
            message = Message.objects.create(
                conversation=conversation,
                hotel=hotel,
                direction=Message.Direction.OUTBOUND,
                text=phone.text,
                message_type=phone.type_message,
                provider_message_id=phone.id_message,
                status=Message.Status.SENT,
                provider_timestamp=phone.timestamp,
                sent_at=phone.timestamp,
            )
            handoff.conversation_staff_phone(conversation=conversation, now=now)
    except IntegrityError:
        existing = _outbound_stored_as(hotel, phone.id_message)  # a concurrent delivery won
        if existing is None:
            raise
        return IngestResult(action="duplicate", message_id=existing)
    return IngestResult(action="staff_phone_stored", message_id=message.pk)


def _outbound_stored_as(hotel: Hotel, id_message: str) -> int | None:
    return _stored_as(Message.objects.filter(hotel=hotel), Message.Direction.OUTBOUND, id_message)
