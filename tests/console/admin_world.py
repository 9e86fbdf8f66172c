"""Two hotels with a row of every kind each, their staff, and an operations user (admin tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone

from messaging.models import CannedResponse, DeliveryAttempt, Hotel, HotelText, ReplyJob, StaffEvent
from messaging.permissions import OPERATIONS_GROUP
from reliability import dead_letters
from reliability.dead_letters import RedriveResult
from reliability.models import AuditEntry, BreakerEvent, DeadLetter
from tests.factories import ConversationFactory, HotelFactory, MessageFactory, ReplyJobFactory


@dataclass
class HotelRows:
    hotel: Hotel
    staff: User
    rows: dict[Any, Any]  # model -> one row of this hotel


def staff_user(username: str, *hotels: Hotel) -> User:
    """A staff user with EVERY model permission: only the hotel scoping keeps them out."""
    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.all())
    for hotel in hotels:
        hotel.staff.add(user)
    return User.objects.get(pk=user.pk)  # fresh permission cache


def operations_user(username: str = "ops") -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.all())
    user.groups.add(Group.objects.get_or_create(name=OPERATIONS_GROUP)[0])
    return User.objects.get(pk=user.pk)


def hotel_rows(name: str, instance: str, chat: str, username: str) -> HotelRows:
    hotel = HotelFactory.create(name=name, green_api_instance_id=instance)
    conversation = ConversationFactory.create(guest__hotel=hotel, guest__chat_id=chat)
    inbound = MessageFactory.create(conversation=conversation, text=f"Question to {name}")
    job = ReplyJobFactory.create(inbound=inbound, status=ReplyJob.Status.DEAD, last_error="gave up")
    attempt = DeliveryAttempt.objects.create(
        job=job,
        attempt=1,
        step=DeliveryAttempt.Step.SEND,
        started_at=timezone.now() - timedelta(minutes=5),
        duration_ms=120,
        outcome=DeliveryAttempt.Outcome.NOT_SENT,
        http_status=503,
        error="Service Unavailable",
    )
    letter = DeadLetter.objects.create(
        kind=DeadLetter.Kind.REPLY_SEND,
        subject=f"reply job {job.pk}",
        subject_type="messaging.replyjob",
        subject_id=job.pk,
        tenant=str(hotel.pk),
        dependency="green_api",
        category=DeadLetter.Category.PROVIDER_5XX,
        reason_code="attempts_exhausted",
        reason=f"{name}: send failed",
        error_message="503 Service Unavailable",
        payload={"job": job.pk, "chatId": chat},
        attempts=6,
    )
    audit = AuditEntry.objects.create(
        actor_name="someone",
        via="admin",
        action="dead_letter.park",
        target_type="reliability.deadletter",
        target_id=str(letter.pk),
        tenant=str(hotel.pk),
        reason=f"{name} note",
    )
    text = HotelText.objects.create(hotel=hotel, key="notice", language="en", text=f"{name} will answer.")
    event = StaffEvent.objects.create(
        hotel=hotel,
        conversation=conversation,
        event=StaffEvent.Event.HANDOFF,
        key=f"handoff:{conversation.pk}:0",
        payload={"event": "handoff", "hotel": hotel.pk},
        next_attempt_at=timezone.now(),
    )
    staff = staff_user(username, hotel)
    rows = {
        Hotel: hotel,
        HotelText: text,
        type(conversation.guest): conversation.guest,
        type(conversation): conversation,
        type(inbound): inbound,
        ReplyJob: job,
        DeliveryAttempt: attempt,
        StaffEvent: event,
        DeadLetter: letter,
        AuditEntry: audit,
        CannedResponse: CannedResponse.objects.create(hotel=hotel, title=f"{name} parking", text="Free."),
    }
    return HotelRows(hotel=hotel, staff=staff, rows=rows)


def breaker_event(name: str = "green_api", to_state: str = "open", at: Any = None) -> BreakerEvent:
    return BreakerEvent.objects.create(
        breaker=name,
        from_state="closed",
        to_state=to_state,
        reason="5 consecutive failures",
        failure_rate=100.0,
        slow_call_rate=0.0,
        source="database",
        process="test:1",
        at=at or timezone.now() - timedelta(minutes=10),
    )


@contextmanager
def handler_registered(kind: str, handler: Any) -> Iterator[Any]:
    """``handler`` takes ``kind``'s dead letters for the block; the previous handler (or none) after."""
    previous = dead_letters.handler_for(kind)
    dead_letters.register_handler(kind, handler)
    try:
        yield handler
    finally:
        if previous is not None:
            dead_letters.register_handler(kind, previous)
        else:
            dead_letters._handlers.pop(kind, None)


class RecordingHandler:
    """A redrive handler for the reply kinds that hands every letter back and remembers it."""

    def __init__(self) -> None:
        self.redriven: list[int] = []

    def redrive(self, letter: DeadLetter, *, actor: Any = None) -> RedriveResult:
        self.redriven.append(letter.pk)
        return RedriveResult(handed_back=True, detail="requeued")

    def alert(self, letter: DeadLetter) -> None:
        pass
