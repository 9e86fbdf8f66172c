"""Push delivery of the fake Green API to a webhook (a tiny stdlib receiver stands in for our endpoint)."""

from __future__ import annotations

import socket
import threading
import time

from fakes import FakeGreenApi
from tests.fakes.conftest import Receiver, call, wait_until

CHAT = "79001234567@c.us"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_push_sends_json_with_bearer_and_content_length(green: FakeGreenApi, receiver: Receiver) -> None:
    green.configure(webhook_url=receiver.url, webhook_token="s3cret")

    id_message = green.inject_inbound(CHAT, "Hello", sender_name="Ana")

    [body] = wait_until(lambda: receiver.bodies("incomingMessageReceived"))
    [delivery] = receiver.deliveries
    assert delivery.path == "/webhooks/green-api/"
    assert delivery.headers["Authorization"] == "Bearer s3cret"
    assert delivery.headers["Content-Type"] == "application/json"
    assert int(delivery.headers["Content-Length"]) > 0
    assert "Transfer-Encoding" not in delivery.headers
    assert body["idMessage"] == id_message
    assert body["senderData"]["senderName"] == "Ana"
    wait_until(lambda: green.notifications()["queue"] == [])  # removed after the 200
    assert green.deliveries()[0]["status"] == 200


def test_no_authorization_header_without_a_token(green: FakeGreenApi, receiver: Receiver) -> None:
    green.configure(webhook_url=receiver.url)
    green.inject_inbound(CHAT, "Hello")
    wait_until(lambda: receiver.deliveries)
    assert "Authorization" not in receiver.deliveries[0].headers


def test_redelivers_the_same_item_after_a_non_200(green: FakeGreenApi, receiver: Receiver) -> None:
    receiver.statuses = [503, 500]
    green.configure(webhook_url=receiver.url, webhook_token="t", redelivery_delay=0.2)

    id_message = green.inject_inbound(CHAT, "Is breakfast included?")

    wait_until(lambda: len(receiver.deliveries) == 3)
    assert [b["idMessage"] for b in receiver.bodies()] == [id_message] * 3
    gaps = [b.time - a.time for a, b in zip(receiver.deliveries, receiver.deliveries[1:], strict=False)]
    assert all(gap >= 0.18 for gap in gaps)
    wait_until(lambda: len(green.deliveries()) == 3)  # the fake logs the 200 after the receiver saw it
    log = green.deliveries()
    assert [(d["status"], d["attempt"]) for d in log] == [(503, 1), (500, 2), (200, 3)]
    assert len({d["receiptId"] for d in log}) == 1


def test_connection_refused_is_retried_and_delivered_once_the_endpoint_is_up(
    green: FakeGreenApi, receiver: Receiver
) -> None:
    green.configure(webhook_url=f"http://127.0.0.1:{_free_port()}/hook", redelivery_delay=0.1)
    id_message = green.inject_inbound(CHAT, "anyone there?")
    wait_until(lambda: len(green.deliveries()) >= 2)
    assert all(d["status"] is None and "ConnectionRefused" in d["error"] for d in green.deliveries())

    green.configure(webhook_url=receiver.url)

    [body] = wait_until(lambda: receiver.bodies())
    assert body["idMessage"] == id_message


def test_deliveries_two_pushes_the_same_notification_twice(green: FakeGreenApi, receiver: Receiver) -> None:
    green.configure(webhook_url=receiver.url)

    reply = call(
        green.url,
        "POST",
        "/__fake__/inbound",
        {
            "chatId": CHAT,
            "text": "late checkout?",
            "senderName": "Bo",
            "idMessage": "ABC123",
            "deliveries": 2,
        },
    )

    assert reply.status == 200
    assert reply.json == {"idMessage": "ABC123"}
    wait_until(lambda: len(receiver.deliveries) == 2)
    assert [b["idMessage"] for b in receiver.bodies()] == ["ABC123", "ABC123"]


def test_fifo_one_push_in_flight(green: FakeGreenApi, receiver: Receiver) -> None:
    receiver.delay = 0.1
    ids = [green.inject_inbound(CHAT, f"message {i}") for i in range(4)]

    green.configure(webhook_url=receiver.url)

    wait_until(lambda: len(receiver.deliveries) == 4)
    assert [b["idMessage"] for b in receiver.bodies()] == ids
    assert receiver.max_in_flight == 1


def test_statuses_arrive_in_order_after_send_message(green: FakeGreenApi, receiver: Receiver) -> None:
    green.configure(webhook_url=receiver.url, status_delays=(0.1, 0.2, 0.3))

    sent = call(
        green.url, "POST", "/waInstance1101000001/sendMessage/test-token", {"chatId": CHAT, "message": "Hi!"}
    )

    id_message = sent.json["idMessage"]
    wait_until(lambda: len(receiver.deliveries) == 4)
    bodies = receiver.bodies()
    assert [b["typeWebhook"] for b in bodies] == ["outgoingAPIMessageReceived"] + [
        "outgoingMessageStatus"
    ] * 3
    assert [b.get("status") for b in bodies[1:]] == ["sent", "delivered", "read"]
    assert {b["idMessage"] for b in bodies} == {id_message}
    assert receiver.deliveries[-1].time - receiver.deliveries[0].time >= 0.25


def test_no_account_status_arrives_even_with_outgoing_webhook_off(
    green: FakeGreenApi, receiver: Receiver
) -> None:
    green.configure(webhook_url=receiver.url)
    call(green.url, "POST", "/__fake__/chat-status", {"chatId": "79009999999@c.us", "status": "noAccount"})
    call(
        green.url,
        "POST",
        "/waInstance1101000001/setSettings/test-token",
        {"outgoingWebhook": "no", "outgoingAPIMessageWebhook": "no"},
    )

    call(
        green.url,
        "POST",
        "/waInstance1101000001/sendMessage/test-token",
        {"chatId": "79009999999@c.us", "message": "Welcome!"},
    )

    [status] = wait_until(lambda: receiver.bodies("outgoingMessageStatus"))
    assert status["status"] == "noAccount"
    assert status["description"]
    assert receiver.bodies("outgoingAPIMessageReceived") == []
    assert green.sent_messages()[0]["statusMessage"] == "noAccount"


def test_state_change_is_pushed(green: FakeGreenApi, receiver: Receiver) -> None:
    green.configure(webhook_url=receiver.url)

    reply = call(green.url, "POST", "/__fake__/state", {"stateInstance": "notAuthorized"})

    assert reply.json == {"stateInstance": "notAuthorized"}
    [body] = wait_until(lambda: receiver.bodies("stateInstanceChanged"))
    assert body["stateInstance"] == "notAuthorized"
    assert body["instanceData"]["idInstance"] == 1101000001


def test_wrong_authorization_push_fault(green: FakeGreenApi, receiver: Receiver) -> None:
    green.configure(webhook_url=receiver.url, webhook_token="right", push_auth="wrong")
    green.inject_inbound(CHAT, "hi")
    wait_until(lambda: receiver.deliveries)
    assert receiver.deliveries[0].headers["Authorization"] == "Bearer wrong-token"


def test_stop_is_prompt_while_a_push_hangs(receiver: Receiver) -> None:
    receiver.delay = 5
    fake = FakeGreenApi(webhook_url=receiver.url).start()
    fake.inject_inbound(CHAT, "hello?")
    wait_until(lambda: receiver.deliveries)

    started = time.monotonic()
    fake.stop()

    assert time.monotonic() - started < 1.5
    assert not any(t.is_alive() for t in threading.enumerate() if t.name.startswith("fake-green"))
