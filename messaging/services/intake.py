"""Writes for webhook intake: inbound messages, delivery statuses, send journal, instance state."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from hotelbot.exceptions import NotFound
from messaging.models import Conversation, Guest, Hotel, Message, ReplyJob
from messaging.notifications import (
    Ignored,
    IncomingMessage,
    Notification,
    OutgoingApiMessage,
    OutgoingStatus,
    StateChanged,
)
from messaging.services import replies, statuses

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IngestResult:
    action: str  # "stored", "duplicate", "status_updated", "status_unmatched", "ignored", ...
    message_id: int | None = None


def hotel_for_instance(*, id_instance: str) -> Hotel:
    hotel = Hotel.objects.filter(green_api_instance_id=id_instance).first()
    if hotel is None:
        raise NotFound(f"No hotel is configured for Green API instance {id_instance}.")
    return hotel


def notification_ingest(*, notification: Notification) -> IngestResult:
    """The webhook's one call: route a parsed notification to the write it needs."""
    if isinstance(notification, Ignored):
        return IngestResult(action="ignored")
    hotel = hotel_for_instance(id_instance=notification.id_instance)
    if isinstance(notification, IncomingMessage):
        return inbound_message_record(hotel=hotel, incoming=notification)
    if isinstance(notification, OutgoingStatus):
        return outbound_status_apply(status=notification)
    if isinstance(notification, OutgoingApiMessage):
        return outbound_journal_record(hotel=hotel, journal=notification)
    return hotel_state_record(hotel=hotel, state=notification)


def _current_conversation(*, hotel: Hotel, guest: Guest, now: datetime) -> Conversation:
    idle_since = now - timedelta(hours=settings.CONVERSATION_IDLE_HOURS)
    conversation = (
        Conversation.objects.filter(guest=guest, last_message_at__gte=idle_since)
        .order_by("-last_message_at")
        .first()
    )
    if conversation is None:
        conversation = Conversation.objects.create(hotel=hotel, guest=guest, last_message_at=now)
    return conversation


def inbound_message_record(*, hotel: Hotel, incoming: IncomingMessage) -> IngestResult:
    """Store the inbound message and its reply job in one transaction; a redelivery is a no-op."""
    if incoming.chat_id.endswith("@g.us"):
        return IngestResult(action="ignored_group_chat")
    inbound = Message.objects.filter(
        direction=Message.Direction.INBOUND, provider_message_id=incoming.id_message
    ).values_list("pk", flat=True)
    if existing := inbound.first():
        return IngestResult(action="duplicate", message_id=existing)
    now = timezone.now()
    try:
        with transaction.atomic():
            guest, created = Guest.objects.get_or_create(
                hotel=hotel,
                chat_id=incoming.chat_id,
                defaults={"display_name": incoming.sender_name, "last_seen_at": now},
            )
            if not created:
                guest.last_seen_at = now
                guest.display_name = incoming.sender_name or guest.display_name
                guest.save(update_fields=["last_seen_at", "display_name"])
            conversation = _current_conversation(hotel=hotel, guest=guest, now=now)
            message = Message.objects.create(
                conversation=conversation,
                direction=Message.Direction.INBOUND,
                text=incoming.text,
                message_type=incoming.type_message,
                provider_message_id=incoming.id_message,
                status=Message.Status.RECEIVED,
                provider_timestamp=incoming.timestamp,
            )
            Conversation.objects.filter(pk=conversation.pk).update(last_message_at=now)
            job = ReplyJob.objects.create(inbound=message, next_attempt_at=now)
            replies.reply_job_enqueue_on_commit(job_id=job.pk)
    except IntegrityError:
        # A concurrent delivery of the same idMessage won the insert.
        existing = inbound.first()
        if existing is None:
            raise
        return IngestResult(action="duplicate", message_id=existing)
    return IngestResult(action="stored", message_id=message.pk)


def outbound_status_apply(*, status: OutgoingStatus) -> IngestResult:
    action, message_id = statuses.outbound_status_apply(status=status)
    return IngestResult(action=action, message_id=message_id)


def hotel_state_record(*, hotel: Hotel, state: StateChanged) -> IngestResult:
    Hotel.objects.filter(pk=hotel.pk).update(
        green_api_state=state.state, green_api_state_changed_at=state.timestamp
    )
    return IngestResult(action="state_recorded")


def outbound_journal_record(*, hotel: Hotel, journal: OutgoingApiMessage) -> IngestResult:
    """``outgoingAPIMessageReceived``: Green API's own record of a message sent through its API.

    If a send of ours is still in doubt for that chat and text, this is its proof of sending; the
    job's next attempt then confirms it instead of sending again.
    """
    if Message.objects.filter(
        direction=Message.Direction.OUTBOUND, provider_message_id=journal.id_message
    ).exists():
        return IngestResult(action="journal_known")
    outbound_id = (
        ReplyJob.objects.filter(
            send_started_at__isnull=False,
            reply_text=journal.text,
            inbound__conversation__hotel=hotel,
            inbound__conversation__guest__chat_id=journal.chat_id,
            outbound__provider_message_id__isnull=True,
        )
        .order_by("send_started_at")
        .values_list("outbound_id", flat=True)
        .first()
    )
    if outbound_id is None:
        return IngestResult(action="journal_unmatched")
    with transaction.atomic():
        Message.objects.filter(pk=outbound_id, provider_message_id__isnull=True).update(
            provider_message_id=journal.id_message
        )
        statuses.deferred_statuses_apply(id_message=journal.id_message)
    return IngestResult(action="journal_matched", message_id=outbound_id)
