"""A guest's WhatsApp message through real processes: fake Green API → gunicorn → Celery → fakes."""

from __future__ import annotations

import time
from typing import Any

import pytest

pytestmark = pytest.mark.e2e


def _sends_to(stack, chat_id: str) -> list[dict[str, Any]]:
    entries = stack.fake("green", "GET", "requests", params={"method_name": "sendMessage"})
    return [e for e in entries if isinstance(e.get("body"), dict) and e["body"].get("chatId") == chat_id]


def _wait_for(predicate, timeout: float, what: str, stack) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}\n{stack.log_tail()}")


def test_simulate_guest_prints_the_delivered_ai_reply(stack):
    chat = "79005550001@c.us"
    result = stack.manage(
        "simulate_guest", "What time is check-out?", "--chat-id", chat, "--timeout", "60", timeout=90
    )
    assert result.returncode == 0, result.stdout + result.stderr + stack.log_tail()
    assert "hotel> Check-out at Seaside Inn is until 11:00." in result.stdout
    assert "reply delivered" in result.stdout or "reply read" in result.stdout
    [send] = _sends_to(stack, chat)
    assert "11:00" in send["body"]["message"]


def test_redelivered_webhook_does_not_produce_a_second_reply(stack):
    chat = "79005550002@c.us"
    sent = stack.fake(
        "green",
        "POST",
        "inbound",
        json={"chatId": chat, "text": "Is there parking?", "senderName": "Bo", "deliveries": 3},
    )
    id_message = sent["idMessage"]

    def pushed_three_times() -> bool:
        log = stack.fake("green", "GET", "notifications").get("deliveries", [])
        return sum(1 for d in log if d.get("idMessage") == id_message and d.get("status") == 200) >= 3

    _wait_for(pushed_three_times, 30, "three deliveries of the same notification", stack)
    _wait_for(lambda: _sends_to(stack, chat), 30, "the reply", stack)
    time.sleep(3)  # room for a wrongly duplicated job to show up
    sends = _sends_to(stack, chat)
    assert len(sends) == 1
    assert "parking" in sends[0]["body"]["message"].lower()


def test_message_sent_while_web_is_down_is_answered_after_redelivery(stack):
    chat = "79005550003@c.us"
    stack.stop("web")
    try:
        stack.fake(
            "green", "POST", "inbound", json={"chatId": chat, "text": "wifi password?", "senderName": "Cy"}
        )
        time.sleep(2)  # Green API's pushes fail (connection refused) and are retried
        assert _sends_to(stack, chat) == []
    finally:
        stack.start_web()
    [send] = _wait_for(lambda: _sends_to(stack, chat), 40, "the reply after redelivery", stack)
    assert "sunny2026" in send["body"]["message"]
