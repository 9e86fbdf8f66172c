"""Issue 19 item 8 through real processes: STOP gets one confirmation, the bot's reply being
generated meanwhile is never sent, and the guest's next message clears the opt-out and is answered."""

from __future__ import annotations

import time

import pytest

from tests.e2e.test_handoff import _slow_ai_once, _state
from tests.e2e.test_message_path import _sends_to, _wait_for

pytestmark = pytest.mark.e2e
CONFIRMATION = "You will receive no more messages from us. Write to us again any time."


def _opted_out(stack, chat: str) -> str:
    return stack.shell(
        "from messaging.models import Guest\n"
        f"print(Guest.objects.get(chat_id={chat!r}).opted_out_at is not None)"
    )


def _inbound(stack, chat: str, text: str) -> None:
    stack.fake("green", "POST", "inbound", json={"chatId": chat, "text": text, "senderName": "Olga"})


def test_stop_is_confirmed_once_the_reply_in_flight_never_goes_and_the_next_message_is_answered(stack):
    chat = "79005550290@c.us"
    # The AI takes 6 s over the guest's first question: its answer is being generated when STOP comes.
    _slow_ai_once(stack)
    try:
        _inbound(stack, chat, "Is the sauna open late?")
        _wait_for(lambda: _state(stack, chat) == "bot answer:in_progress", 30, "the answer generating", stack)
        _inbound(stack, chat, "STOP")
        [confirmation] = _wait_for(lambda: _sends_to(stack, chat), 60, "the opt-out confirmation", stack)
        assert confirmation["body"]["message"] == CONFIRMATION
        assert _opted_out(stack, chat) == "True"
        # The answer in flight finds its job closed at its next fenced write: never sent.
        _wait_for(
            lambda: _state(stack, chat) == "bot answer:superseded opt_out:done",
            60,
            "the answer in flight closed",
            stack,
        )
    finally:
        stack.fake("deepseek", "DELETE", "faults")
    time.sleep(2)  # room for a wrong bot message to show up
    assert len(_sends_to(stack, chat)) == 1

    # The guest writes again: the opt-out ends and the question is answered.
    _inbound(stack, chat, "Hello again, what time is check-out?")
    sends = _wait_for(
        lambda: (lambda s: s if len(s) == 2 else [])(_sends_to(stack, chat)), 60, "the answer", stack
    )
    assert sends[1]["body"]["message"] not in ("", CONFIRMATION)
    assert _opted_out(stack, chat) == "False"
