"""Events for a hotel's own systems: a guest handed to staff, a guest waiting past the target
(``Hotel.staff_webhook_url``, docs/handoff.md).

An outbox: the event row (``StaffEvent``) is written in the transaction of what it reports (the
owner becoming ``waiting``; the re-alert's claim), once (its ``key``), and POSTed by the staff
alerts' beat task after the mails (:func:`staff_events_deliver`), so a slow or broken endpoint
never delays or loses a mail. A failed POST is tried again by a later run (backoff from a minute
to an hour, raised to the endpoint's Retry-After) for :data:`GIVE_UP_AFTER`; a receiver may get an
event twice (a lost answer), and tells by its ``id``.

The body: ``{"id", "event": "handoff"|"handoff_overdue", "hotel", "conversation", "reason",
"waiting_seconds", "guest", "at"}``; ``guest`` is the chat id masked to its last 4 digits.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db.models import F
from django.utils import timezone

from messaging.clients import staff_webhook
from messaging.models import Conversation, StaffEvent
from reliability import masking
from reliability.crypto import FieldEncryptionError
from reliability.retry import RetryConfig, retry_delay

logger = logging.getLogger(__name__)

#: An event not delivered this long after it happened is given up (visible in admin).
GIVE_UP_AFTER = timedelta(hours=24)
#: The wait before the next try, by tries made: a minute, doubling, at most an hour.
BACKOFF = RetryConfig(max_attempts=1000, base_delay=60.0, max_delay=3600.0, jitter="equal")
#: Tries per run: a run's POSTs end within this many x STAFF_WEBHOOK_TIMEOUT.
BATCH = 20


def staff_event_record(
    *, conversation: Conversation, event: str, now: datetime, waiting_seconds: float = 0.0
) -> None:
    """Write the event (inside the caller's transaction) when the hotel has a webhook URL; once per
    event, conversation and handoff (``owner_since``: a second write of the same one is ignored)."""
    hotel = conversation.hotel
    if not hotel.staff_webhook_url:
        return
    since = conversation.owner_since or now
    payload = {
        "event": event,
        "hotel": hotel.pk,
        "conversation": conversation.pk,
        "reason": conversation.owner_reason,
        "waiting_seconds": round(waiting_seconds),
        "guest": masking.mask_chat_id(conversation.guest.chat_id),
        "at": now.isoformat(),
    }
    row = StaffEvent(
        hotel=hotel,
        conversation=conversation,
        event=event,
        key=f"{event}:{conversation.pk}:{since.timestamp():.6f}",
        payload=payload,
        next_attempt_at=now,
    )
    StaffEvent.objects.bulk_create([row], ignore_conflicts=True)


def _claim(event: StaffEvent, now: datetime) -> bool:
    """Take the event for one try: the next try's time is pushed first (one conditional UPDATE, so
    two runs never POST the same try; a run that dies leaves it to the next after the backoff)."""
    wait = retry_delay(BACKOFF, event.attempts + 1)
    return bool(
        StaffEvent.objects.filter(
            pk=event.pk, attempts=event.attempts, delivered_at__isnull=True, given_up_at__isnull=True
        ).update(attempts=F("attempts") + 1, next_attempt_at=now + timedelta(seconds=wait))
    )


def _give_up(event: StaffEvent, now: datetime, why: str) -> None:
    StaffEvent.objects.filter(pk=event.pk).update(given_up_at=now, last_error=why[:2000])
    logger.error("staff event %s (hotel %s) given up: %s", event.pk, event.hotel_id, why)


def staff_events_deliver(*, now: datetime | None = None, limit: int = BATCH) -> int:
    """POST the due events (oldest first, at most ``limit``); returns how many were delivered.
    Failures are logged and kept for a later run; none is raised."""
    now = now or timezone.now()
    due = (
        StaffEvent.objects.select_related("hotel")
        .filter(delivered_at__isnull=True, given_up_at__isnull=True, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "pk")[:limit]
    )
    delivered = 0
    for event in list(due):
        hotel = event.hotel
        if not hotel.staff_webhook_url:
            _give_up(event, now, "the hotel has no staff webhook URL any more")
            continue
        if now - event.created_at > GIVE_UP_AFTER:
            _give_up(event, now, f"not delivered within {GIVE_UP_AFTER}; last error: {event.last_error}")
            continue
        if not _claim(event, now):
            continue
        try:
            secret = hotel.staff_webhook_secret or ""
        except FieldEncryptionError as e:  # never an unsigned event where a signature is expected
            StaffEvent.objects.filter(pk=event.pk).update(last_error=f"secret unreadable: {e.message}"[:2000])
            continue
        try:
            staff_webhook.post_event(
                url=hotel.staff_webhook_url, event={"id": event.pk, **event.payload}, secret=secret
            )
        except staff_webhook.StaffWebhookError as e:
            error = masking.mask_chat_id(str(e))
            fields: dict[str, object] = {"last_error": error[:2000]}
            if e.retry_after:  # the endpoint asked for a longer pause
                later = now + timedelta(
                    seconds=retry_delay(BACKOFF, event.attempts + 1, retry_after=e.retry_after)
                )
                fields["next_attempt_at"] = later
            StaffEvent.objects.filter(pk=event.pk).update(**fields)
            logger.warning("staff event %s (hotel %s) not delivered: %s", event.pk, hotel.pk, error)
            continue
        StaffEvent.objects.filter(pk=event.pk).update(delivered_at=timezone.now(), last_error="")
        delivered += 1
    return delivered
