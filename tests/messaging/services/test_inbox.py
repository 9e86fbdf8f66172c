"""Issue 19 (the staff inbox): internal notes, canned responses, and the inbox's reads (the list of
conversations waiting for staff, one conversation's thread)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError
from django.utils import timezone

from hotelbot.exceptions import NotFound, ValidationFailed
from messaging import selectors
from messaging.models import CannedResponse, Conversation, ConversationNote, Message, ReplyJob
from messaging.services import handoff, inbox
from reliability.models import AuditEntry
from tests.console.admin_world import staff_user
from tests.factories import ConversationFactory, HotelFactory, MessageFactory, ReplyJobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def hotel_a():
    return HotelFactory.create(name="Hotel A", green_api_instance_id="1101000001")


@pytest.fixture
def hotel_b():
    return HotelFactory.create(name="Hotel B", green_api_instance_id="1101000002")


def _conversation(
    hotel, chat: str, *, owner: str = "bot", since_minutes: float = 0, **fields
) -> Conversation:
    conversation = ConversationFactory.create(guest__hotel=hotel, guest__chat_id=chat)
    Conversation.objects.filter(pk=conversation.pk).update(
        owner=owner, owner_since=timezone.now() - timedelta(minutes=since_minutes), **fields
    )
    conversation.refresh_from_db()
    return conversation


# --- notes ----------------------------------------------------------------------------------------
def test_a_note_is_kept_audited_and_never_becomes_a_reply(hotel_a):
    conversation = _conversation(hotel_a, "79001110001@c.us", owner="waiting")
    alice = staff_user("alice", hotel_a)

    note = inbox.note_add(conversation_id=conversation.pk, actor=alice, text="  Guest is VIP  ", via="admin")

    assert (note.text, note.author, note.conversation_id) == ("Guest is VIP", alice, conversation.pk)
    entry = AuditEntry.objects.get(action="conversation.note")
    assert (entry.actor, entry.via, entry.tenant) == (alice, "admin", str(hotel_a.pk))
    assert entry.target_id == str(conversation.pk)
    assert entry.details == {"note": note.pk, "text": "Guest is VIP"}
    assert not ReplyJob.objects.exists()
    assert not Message.objects.filter(direction=Message.Direction.OUTBOUND).exists()


@pytest.mark.parametrize(
    ("text", "problem"), [("   ", "Required."), ("x" * (inbox.MAX_NOTE + 1), "Too long.")]
)
def test_an_empty_or_too_long_note_is_refused(hotel_a, text, problem):
    conversation = _conversation(hotel_a, "79001110002@c.us")
    with pytest.raises(ValidationFailed) as refused:
        inbox.note_add(
            conversation_id=conversation.pk, actor=staff_user("alice", hotel_a), text=text, via="api"
        )
    assert refused.value.details == {"text": problem}
    assert not ConversationNote.objects.exists()


def test_a_note_on_another_hotels_conversation_is_not_found(hotel_a, hotel_b):
    foreign = _conversation(hotel_b, "79001110003@c.us")
    with pytest.raises(NotFound):
        inbox.note_add(conversation_id=foreign.pk, actor=staff_user("alice", hotel_a), text="hi", via="api")
    assert not ConversationNote.objects.exists()
    assert not AuditEntry.objects.exists()


def test_a_note_outlives_its_author(hotel_a):
    conversation = _conversation(hotel_a, "79001110004@c.us")
    alice = staff_user("alice", hotel_a)
    note = inbox.note_add(conversation_id=conversation.pk, actor=alice, text="call back at 5", via="admin")
    alice.delete()
    note.refresh_from_db()
    assert note.author is None
    [item] = selectors.conversation_thread(conversation=conversation).items
    assert (item.kind, item.who, item.text) == ("note", "(deleted user)", "call back at 5")


# --- canned responses -------------------------------------------------------------------------------
def test_canned_responses_are_per_hotel_in_order_and_by_language(hotel_a, hotel_b):
    CannedResponse.objects.create(hotel=hotel_a, title="Parking", text="Free parking.", ordering=2)
    CannedResponse.objects.create(hotel=hotel_a, title="Late check-out", text="Until 13:00.", ordering=1)
    CannedResponse.objects.create(hotel=hotel_a, title="Parking", language="es", text="Parking gratis.")
    CannedResponse.objects.create(hotel=hotel_b, title="Parking", text="No parking.")

    listed = selectors.canned_responses_list(hotel_id=hotel_a.pk)
    assert [(c.title, c.language) for c in listed] == [
        ("Parking", "es"),
        ("Late check-out", "en"),
        ("Parking", "en"),
    ]
    spanish = selectors.canned_responses_list(hotel_id=hotel_a.pk, language="es")
    assert [c.text for c in spanish] == ["Parking gratis."]


def test_a_title_is_unique_per_hotel_and_language(hotel_a):
    CannedResponse.objects.create(hotel=hotel_a, title="Parking", text="Free.")
    with pytest.raises(IntegrityError):
        CannedResponse.objects.create(hotel=hotel_a, title="Parking", text="Again.")


# --- the list -------------------------------------------------------------------------------------
def test_the_inbox_lists_waiting_oldest_first_then_held_and_only_the_users_hotels(hotel_a, hotel_b):
    now = timezone.now()
    recent = _conversation(hotel_a, "79001110011@c.us", owner="waiting", since_minutes=2)
    oldest = _conversation(hotel_a, "79001110012@c.us", owner="waiting", since_minutes=30)
    held = _conversation(hotel_a, "79001110013@c.us", owner="staff", since_minutes=60)
    phone = _conversation(
        hotel_a, "79001110014@c.us", owner="staff", since_minutes=5, owner_until=now + timedelta(hours=1)
    )
    _conversation(  # a hold from the phone that has ended: the bot answers again
        hotel_a, "79001110015@c.us", owner="staff", since_minutes=200, owner_until=now - timedelta(minutes=1)
    )
    _conversation(hotel_a, "79001110016@c.us")  # the bot's
    _conversation(hotel_b, "79001110017@c.us", owner="waiting", since_minutes=90)  # another hotel's

    alice = staff_user("alice", hotel_a)
    listed = list(selectors.inbox_conversations(user=alice, now=now))
    assert listed == [oldest, recent, held, phone]
    waiting = selectors.inbox_conversations(user=alice, now=now, owners=("waiting",))
    assert list(waiting) == [oldest, recent]


def test_inbox_rows_mask_the_number_and_measure_the_wait_against_the_hotels_target(hotel_a):
    hotel_a.handoff_target_minutes = 10
    hotel_a.save()
    conversation = _conversation(hotel_a, "79001234567@c.us", owner="waiting", since_minutes=25)
    MessageFactory.create(conversation=conversation, text="I want to talk to a person")
    MessageFactory.create(conversation=conversation, text="", message_type="audioMessage")
    _conversation(hotel_a, "79001110021@c.us", owner="waiting", since_minutes=3)

    now = timezone.now()
    rows = selectors.inbox_rows(
        selectors.inbox_conversations(user=staff_user("a", hotel_a), now=now), now=now
    )
    late, early = rows
    assert late.guest == "***4567@c.us"
    assert 25 * 60 - 5 < late.waited_seconds < 25 * 60 + 5
    assert late.target_seconds == 600
    assert (late.overdue, early.overdue) == (True, False)
    assert late.last_message == "[audioMessage]"
    assert early.last_message == ""


# --- the thread ------------------------------------------------------------------------------------
def test_the_thread_shows_every_sender_with_its_status_and_the_notes_in_order(hotel_a, settings):
    conversation = _conversation(hotel_a, "79001110031@c.us", owner="bot")
    alice = staff_user("alice", hotel_a)
    t0 = timezone.now() - timedelta(minutes=10)

    def at(message: Message, minutes: int) -> Message:
        Message.objects.filter(pk=message.pk).update(created_at=t0 + timedelta(minutes=minutes))
        return message

    asked = at(MessageFactory.create(conversation=conversation, text="Check-out?"), 0)
    bot = at(
        MessageFactory.create(
            conversation=conversation,
            direction=Message.Direction.OUTBOUND,
            status=Message.Status.DELIVERED,
            text="Until 11:00.",
        ),
        1,
    )
    ReplyJobFactory.create(inbound=asked, outbound=bot, status=ReplyJob.Status.DONE)
    person = at(MessageFactory.create(conversation=conversation, text="I want a person"), 2)
    at(
        MessageFactory.create(
            conversation=conversation,
            direction=Message.Direction.OUTBOUND,
            status=Message.Status.SENT,
            text="Hi, reception here",
        ),
        3,
    )
    failed = at(
        MessageFactory.create(
            conversation=conversation,
            direction=Message.Direction.OUTBOUND,
            status=Message.Status.FAILED,
            status_detail="SWE004: 79001110031",
            text="Staff answer",
        ),
        4,
    )
    ReplyJobFactory.create(
        inbound=person, outbound=failed, kind=ReplyJob.Kind.STAFF, status=ReplyJob.Status.DONE
    )
    note = inbox.note_add(conversation_id=conversation.pk, actor=alice, text="VIP", via="admin")
    queued = handoff.staff_reply_queue(
        conversation_id=conversation.pk, text="We will call you", actor=alice, via="admin"
    )

    thread = selectors.conversation_thread(conversation=conversation)
    assert not thread.truncated
    assert [(i.kind, i.who, i.text, i.status) for i in thread.items] == [
        ("message", "guest", "Check-out?", "received"),
        ("message", "bot", "Until 11:00.", "delivered"),
        ("message", "guest", "I want a person", "received"),
        ("message", "staff (phone)", "Hi, reception here", "sent"),
        ("message", "staff", "Staff answer", "failed"),
        ("note", "alice", "VIP", ""),
        ("queued", "staff", "We will call you", "queued"),
    ]
    assert thread.items[4].status_detail == "SWE004: ***0031"  # numbers in provider text masked
    assert (thread.items[5].pk, thread.items[6].pk) == (note.pk, queued.pk)


def test_a_long_thread_shows_its_latest_messages_in_three_queries(hotel_a, django_assert_num_queries):
    conversation = _conversation(hotel_a, "79001110041@c.us")
    for n in range(6):
        MessageFactory.create(conversation=conversation, text=f"message {n}")
    with django_assert_num_queries(3):  # messages (+ their jobs), unsent staff replies, notes
        thread = selectors.conversation_thread(conversation=conversation, limit=4)
    assert thread.truncated
    assert [i.text for i in thread.items] == ["message 2", "message 3", "message 4", "message 5"]


def test_a_conversation_of_another_hotel_is_not_found(hotel_a, hotel_b):
    foreign = _conversation(hotel_b, "79001110051@c.us", owner="waiting")
    with pytest.raises(NotFound):
        selectors.inbox_conversation_get(user=staff_user("alice", hotel_a), pk=foreign.pk)
