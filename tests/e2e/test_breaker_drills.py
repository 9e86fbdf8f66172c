"""Staff overrides reach every real process without a restart, and nothing is lost meanwhile."""

from __future__ import annotations

import time

import pytest

from tests.e2e.test_message_path import _sends_to, _wait_for

pytestmark = pytest.mark.e2e
SETTLE = 2.5  # BREAKER_CONFIG_REFRESH is 1 s in the stack; Redis-shared state syncs within 0.5 s


def _chat_completions(stack) -> int:
    return len(stack.fake("deepseek", "GET", "requests", params={"path_regex": "chat/completions"}))


def test_ai_breaker_forced_open_answers_from_faq_without_calling_the_ai(stack):
    result = stack.manage("breakers", "force-open", "deepseek", "--reason", "e2e drill")
    assert result.returncode == 0, result.stderr
    try:
        time.sleep(SETTLE)
        before = _chat_completions(stack)
        chat = "79005550004@c.us"
        result = stack.manage(
            "simulate_guest", "Is there parking?", "--chat-id", chat, "--timeout", "60", timeout=90
        )
        assert result.returncode == 0, result.stdout + result.stderr + stack.log_tail()
        assert "hotel> Parking: free on-site parking, 20 spaces." in result.stdout
        assert _chat_completions(stack) == before
    finally:
        assert stack.manage("breakers", "close", "deepseek").returncode == 0


def test_reply_waits_while_green_api_breaker_is_open_and_is_drained_after(stack):
    chat = "79005550005@c.us"
    assert stack.manage("breakers", "force-open", "green_api", "--reason", "e2e drill").returncode == 0
    try:
        time.sleep(SETTLE)
        stack.fake(
            "green", "POST", "inbound", json={"chatId": chat, "text": "breakfast?", "senderName": "Di"}
        )
        status = _wait_for(
            lambda: (
                stack.shell(
                    "from messaging.models import ReplyJob; "
                    f"j = ReplyJob.objects.filter(inbound__conversation__guest__chat_id='{chat}').first(); "
                    "print(j.status if j else '')"
                )
                == "pending_provider_recovery"
            ),
            30,
            "the reply to wait for Green API",
            stack,
        )
        assert status
        assert _sends_to(stack, chat) == []
    finally:
        assert stack.manage("breakers", "close", "green_api").returncode == 0
    [send] = _wait_for(lambda: _sends_to(stack, chat), 30, "the drained reply", stack)
    assert "07:00-10:30" in send["body"]["message"]
    time.sleep(2)
    assert len(_sends_to(stack, chat)) == 1
