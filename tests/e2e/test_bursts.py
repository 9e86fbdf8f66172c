"""Issue 19 item 7 through real processes: three messages in two seconds, one answer.

The stack runs the product's burst window (3 s quiet, 15 s cap): fake Green API pushes the three
messages to gunicorn, the worker answers once the guest has been quiet.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.test_message_path import _sends_to, _wait_for

pytestmark = pytest.mark.e2e
BURST = ("hi there", "do you have parking for a van", "and breakfast?")


def _jobs(stack, chat: str) -> str:
    """The statuses of the guest's reply jobs, oldest first."""
    return stack.shell(
        "from messaging.models import ReplyJob\n"
        f"jobs = ReplyJob.objects.filter(inbound__conversation__guest__chat_id={chat!r}).order_by('pk')\n"
        "print(*[j.status for j in jobs])"
    )


def _asked(stack) -> list[str]:
    """The last user message of every chat completion the fake DeepSeek answered."""
    entries = stack.fake("deepseek", "GET", "requests", params={"path_regex": "chat/completions"})
    asked = []
    for entry in entries:
        body: Any = entry.get("body")
        if isinstance(body, dict) and body.get("messages"):
            asked.append(str(body["messages"][-1].get("content", "")))
    return asked


def test_three_messages_in_two_seconds_get_one_ai_call_and_one_reply(stack):
    chat = "79005550701@c.us"
    for n, text in enumerate(BURST):
        if n:
            time.sleep(0.8)  # the guest types the next message
        stack.fake("green", "POST", "inbound", json={"chatId": chat, "text": text, "senderName": "Ines"})

    _wait_for(lambda: _sends_to(stack, chat), 60, "the reply", stack)
    # Merged jobs never send: once the answering job is done, nothing else can reach the guest.
    _wait_for(lambda: _jobs(stack, chat) == "merged merged done", 30, "the burst's jobs settled", stack)

    [send] = _sends_to(stack, chat)
    reply = send["body"]["message"]
    assert reply.startswith("Hello and welcome to Seaside Inn!")
    assert "Parking at Seaside Inn" in reply
    assert "Breakfast at Seaside Inn" in reply
    asked = _asked(stack)
    assert asked.count("\n".join(BURST)) == 1  # one DeepSeek call read the three together
    assert not [question for question in asked if question in BURST]  # and none read one alone
