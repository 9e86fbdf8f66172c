"""Issue 19 through real processes: a guest asks for a person and staff answer (from the hotel's
phone or through the inbox's API); staff typing on the phone stop the bot's reply in flight."""

from __future__ import annotations

import time
from typing import Any

import pytest

from drill.staff import StaffApi, create_staff
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


def _slow_ai_once(stack, ms: int = 6000) -> None:
    """The fake DeepSeek takes ``ms`` over the next chat completion (its latency fault)."""
    stack.fake(
        "deepseek",
        "POST",
        "faults",
        json={"mode": "latency", "latency_ms": ms, "count": 1, "match": {"path_regex": "chat/completions"}},
    )


def _inbound(stack, chat: str, text: str) -> None:
    stack.fake("green", "POST", "inbound", json={"chatId": chat, "text": text, "senderName": "Hana"})


def test_staff_answer_through_the_api_once_the_bot_stays_silent_until_handed_back(stack):
    chat = "79005550191@c.us"
    staff = StaffApi(stack.web_url, create_staff(stack))
    _inbound(stack, chat, "I want to talk to a person")
    [notice] = _wait_for(lambda: _sends_to(stack, chat), 60, "the handoff notice", stack)
    assert NOTICE in notice["body"]["message"]

    # Staff see the guest waiting in the inbox's API and answer; a retry with the same key (an
    # answer lost on the way) queues nothing more.
    [waiting] = _wait_for(
        lambda: [c for c in staff.waiting() if c["guest"] == "***0191@c.us"], 30, "the guest waiting", stack
    )
    assert waiting["owner_reason"] == "guest_asked"
    text = "Hello Hana, this is Maria from reception. How can I help?"
    job = staff.reply(waiting["id"], text, request_key="e2e-staff-reply-1")
    assert staff.reply(waiting["id"], text, request_key="e2e-staff-reply-1")["id"] == job["id"]
    assert staff.conversation(waiting["id"])["owner"] == "staff"  # replying took the conversation
    _wait_for(
        lambda: _state(stack, chat) == "staff handoff:done staff:done", 60, "the staff reply sent", stack
    )

    # The guest's next message while staff hold the conversation: closed, no bot answer.
    _inbound(stack, chat, "Thanks! Is there parking?")
    _wait_for(
        lambda: _state(stack, chat) == "staff handoff:done staff:done answer:superseded",
        60,
        "the guest's message closed unanswered",
        stack,
    )
    # Every job of the guest is closed: nothing more can reach them before the hand-back.
    assert [s["body"]["message"] for s in _sends_to(stack, chat)] == [notice["body"]["message"], text]

    assert staff.hand_back(waiting["id"])["owner"] == "bot"
    _inbound(stack, chat, "And what time is check-out?")
    sends = _wait_for(
        lambda: (lambda s: s if len(s) == 3 else [])(_sends_to(stack, chat)), 60, "the bot's answer", stack
    )
    assert "11:00" in sends[2]["body"]["message"]
    _wait_for(
        lambda: _state(stack, chat) == "bot handoff:done staff:done answer:superseded answer:done",
        30,
        "the answer done",
        stack,
    )
    assert len(_sends_to(stack, chat)) == 3


def _completions_asking(stack, question: str) -> list[dict[str, Any]]:
    """The fake DeepSeek's chat completions whose last message is ``question`` (later prompts
    carry it as history)."""
    entries = stack.fake("deepseek", "GET", "requests", params={"path_regex": "chat/completions"})
    return [
        e
        for e in entries
        if isinstance(e.get("body"), dict)
        and (e["body"].get("messages") or [{}])[-1].get("content") == question
    ]


def test_staff_typing_on_the_phone_while_the_bot_generates_its_reply_stop_that_reply(stack):
    chat = "79005550192@c.us"
    question = "Is the pool open in the evening?"
    # The AI takes 6 s over the guest's question: its answer is being generated when staff type.
    _slow_ai_once(stack)
    try:
        _inbound(stack, chat, question)
        _wait_for(lambda: _state(stack, chat) == "bot answer:in_progress", 30, "the answer generating", stack)
        stack.fake(
            "green",
            "POST",
            "outgoing",
            json={"chatId": chat, "text": "Hi, reception here: yes, until 22:00."},
        )
        _wait_for(
            lambda: _state(stack, chat) == "staff answer:superseded", 30, "the answer in flight closed", stack
        )
        # The AI's answer came back to the worker after the takeover ...
        _wait_for(
            lambda: [e for e in _completions_asking(stack, question) if "duration_ms" in e],
            30,
            "the slow AI answer returned",
            stack,
        )
    finally:
        stack.fake("deepseek", "DELETE", "faults")

    # ... and is never sent: the hold ends by hand-back, the guest asks again, and the bot's first
    # and only message to them is the answer to the new question.
    staff = StaffApi(stack.web_url, create_staff(stack))
    pk = int(
        stack.shell(
            "from messaging.models import Conversation\n"
            f"print(Conversation.objects.filter(guest__chat_id={chat!r}).latest('pk').pk)"
        )
    )
    assert staff.hand_back(pk)["owner"] == "bot"
    _inbound(stack, chat, "What time is check-out?")
    _wait_for(
        lambda: _state(stack, chat) == "bot answer:superseded answer:done", 60, "the next answer", stack
    )
    [send] = _sends_to(stack, chat)
    assert "11:00" in send["body"]["message"]
    assert len(_completions_asking(stack, question)) == 1  # generated once, never retried
