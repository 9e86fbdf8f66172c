"""Issue 19 through real processes: a guest asks for a person, staff answer from the hotel's phone."""

from __future__ import annotations

import time

import pytest

from tests.e2e.test_message_path import _sends_to, _wait_for

pytestmark = pytest.mark.e2e
NOTICE = "A member of our staff will answer you here."


def _state(stack, chat: str) -> str:
    """'<owner> <status of each reply job, oldest first>' of the guest's latest conversation."""
    return stack.shell(
        "from messaging.models import Conversation, ReplyJob\n"
        f"c = Conversation.objects.filter(guest__chat_id={chat!r}).order_by('-pk').first()\n"
        "jobs = ReplyJob.objects.filter(inbound__conversation=c).order_by('pk')\n"
        "print(c.owner if c else '-', *[f'{j.kind}:{j.status}' for j in jobs])"
    )


def test_guest_asking_for_a_person_gets_one_notice_and_staff_on_the_phone_silence_the_bot(stack):
    chat = "79005550190@c.us"
    stack.fake(
        "green",
        "POST",
        "inbound",
        json={"chatId": chat, "text": "I want to talk to a person", "senderName": "Hana"},
    )
    [notice] = _wait_for(lambda: _sends_to(stack, chat), 60, "the handoff notice", stack)
    assert NOTICE in notice["body"]["message"]
    assert _wait_for(
        lambda: _state(stack, chat) == "waiting handoff:done", 30, "the conversation waiting", stack
    )

    # Staff answer from the hotel's own WhatsApp phone: Green API reports outgoingMessageReceived.
    stack.fake(
        "green", "POST", "outgoing", json={"chatId": chat, "text": "Hello Hana, Maria from reception here."}
    )
    _wait_for(lambda: _state(stack, chat).startswith("staff "), 30, "the conversation held by staff", stack)

    stack.fake(
        "green",
        "POST",
        "inbound",
        json={"chatId": chat, "text": "Thanks! Is there parking?", "senderName": "Hana"},
    )
    expected = "staff handoff:done answer:superseded"
    _wait_for(
        lambda: _state(stack, chat) == expected, 60, "the guest's next message closed unanswered", stack
    )
    time.sleep(2)  # room for a wrong bot answer to show up
    assert len(_sends_to(stack, chat)) == 1
