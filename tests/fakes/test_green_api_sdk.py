"""Fidelity: the official, unmodified Green API SDK (whatsapp-api-client-python) against the fake."""

from __future__ import annotations

import re
import time

import pytest
from whatsapp_api_client_python import API

from fakes import FakeGreenApi
from tests.fakes.conftest import Receiver, wait_until

CHAT = "79001234567@c.us"
SETTINGS_FIELDS = {
    "wid",
    "webhookUrl",
    "webhookUrlToken",
    "delaySendMessagesMilliseconds",
    "markIncomingMessagesReaded",
    "markIncomingMessagesReadedOnReply",
    "outgoingWebhook",
    "outgoingMessageWebhook",
    "outgoingAPIMessageWebhook",
    "incomingWebhook",
    "stateWebhook",
    "deviceWebhook",
    "pollMessageWebhook",
    "incomingCallWebhook",
    "keepOnlineStatus",
    "countryInstance",
    "typeAccount",
    "sharedSession",
}


def test_send_message_returns_id_and_the_journal_shows_the_documented_request(
    green: FakeGreenApi, green_sdk: API.GreenAPI
) -> None:
    response = green_sdk.sending.sendMessage(CHAT, "Hello", linkPreview=False)

    assert response.code == 200
    assert re.fullmatch(r"[0-9A-F]{20}", response.data["idMessage"])
    [entry] = green.journal("sendMessage")
    assert entry["method"] == "POST"
    assert entry["path"] == "/waInstance1101000001/sendMessage/test-token"
    assert entry["headers"]["user-agent"] == "GREEN-API_SDK_PY/1.0"
    assert entry["headers"]["content-type"] == "application/json"
    assert entry["body"] == {"chatId": CHAT, "message": "Hello", "linkPreview": False}
    assert entry["status"] == 200
    assert entry["rule"] is None


def test_get_state_instance_and_refusal_while_starting(green: FakeGreenApi, green_sdk: API.GreenAPI) -> None:
    assert green_sdk.account.getStateInstance().data == {"stateInstance": "authorized"}

    green.set_state("starting")

    assert green_sdk.account.getStateInstance().data == {"stateInstance": "starting"}
    with pytest.raises(API.GreenAPIError, match="instance in starting process try later"):
        green_sdk.sending.sendMessage(CHAT, "Hello")
    assert len(green.journal("sendMessage")) == 1  # a 400 is not retried by the SDK


def test_get_and_set_settings(green: FakeGreenApi, green_sdk: API.GreenAPI) -> None:
    settings = green_sdk.account.getSettings().data
    assert set(settings) >= SETTINGS_FIELDS
    assert settings["incomingWebhook"] == settings["outgoingAPIMessageWebhook"] == "yes"
    assert settings["delaySendMessagesMilliseconds"] == 500
    assert settings["webhookUrl"] == ""

    saved = green_sdk.account.setSettings({"webhookUrl": "http://127.0.0.1:9/hook", "stateWebhook": "no"})

    assert saved.data == {"saveSettings": True}
    after = green_sdk.account.getSettings().data
    assert after["webhookUrl"] == "http://127.0.0.1:9/hook"
    assert after["stateWebhook"] == "no"
    assert green.notifications()["mode"] == "push"
    with pytest.raises(API.GreenAPIError, match="at least 1 key"):
        green_sdk.account.setSettings({})


def test_set_settings_webhook_then_push_uses_the_new_url_and_token(
    green: FakeGreenApi, green_sdk: API.GreenAPI, receiver: Receiver
) -> None:
    """What hotel_connect does, through the official SDK: set the webhook URL and token (and the
    notification flags), read them back, and the next push goes there with the new token."""
    wanted = {
        "webhookUrl": f"{receiver.url.rstrip('/')}/hotel/1101000001/",
        "webhookUrlToken": "hotel-token-1",
        "incomingWebhook": "yes",
        "outgoingWebhook": "yes",
        "outgoingAPIMessageWebhook": "no",
        "stateWebhook": "yes",
    }

    assert green_sdk.account.setSettings(wanted).data == {"saveSettings": True}

    after = green_sdk.account.getSettings().data
    assert {key: after[key] for key in wanted} == wanted
    assert set(after) >= SETTINGS_FIELDS
    green.inject_inbound(CHAT, "Late check-out?")
    [delivery] = wait_until(lambda: receiver.deliveries)
    assert delivery.path.endswith("/hotel/1101000001/")
    assert delivery.headers["Authorization"] == "Bearer hotel-token-1"

    # A second rotation: the next push carries the newer token.
    green_sdk.account.setSettings({"webhookUrlToken": "hotel-token-2"})
    green.inject_inbound(CHAT, "And breakfast?")
    wait_until(lambda: len(receiver.deliveries) >= 2)
    assert receiver.deliveries[1].headers["Authorization"] == "Bearer hotel-token-2"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"incomingWebhook": True}, "must be one of \\[yes, no\\]"),
        ({"webhookUrl": "not a url"}, "valid uri"),
        ({"webhookUrlToken": 5}, "must be a string"),
        ({"delaySendMessagesMilliseconds": 100}, "greater than or equal to 500"),
    ],
)
def test_set_settings_validates_fields(green: FakeGreenApi, green_sdk: API.GreenAPI, fields, error) -> None:
    before = green_sdk.account.getSettings().data
    with pytest.raises(API.GreenAPIError, match=error):
        green_sdk.account.setSettings(fields)
    assert green_sdk.account.getSettings().data == before


def test_receive_and_delete_notification_by_polling(green: FakeGreenApi, green_sdk: API.GreenAPI) -> None:
    id_message = green.inject_inbound(CHAT, "When is breakfast?", sender_name="Ana")

    first = green_sdk.receiving.receiveNotification(receiveTimeout=5).data
    again = green_sdk.receiving.receiveNotification().data

    assert first == again  # the head repeats until it is deleted
    body = first["body"]
    assert body["typeWebhook"] == "incomingMessageReceived"
    assert body["idMessage"] == id_message
    assert body["instanceData"] == {
        "idInstance": 1101000001,
        "wid": "11001234567@c.us",
        "typeInstance": "whatsapp",
    }
    assert body["senderData"]["chatId"] == CHAT
    assert body["senderData"]["senderName"] == "Ana"
    assert body["messageData"] == {
        "typeMessage": "textMessage",
        "textMessageData": {"textMessage": "When is breakfast?"},
    }
    assert green_sdk.receiving.deleteNotification(first["receiptId"]).data == {"result": True}
    assert green_sdk.receiving.deleteNotification(first["receiptId"]).data == {"result": False}

    started = time.monotonic()
    empty = green_sdk.receiving.receiveNotification(receiveTimeout=5)
    assert empty.code == 200
    assert empty.data is None  # the literal JSON null
    assert 0.2 <= time.monotonic() - started < 2  # 5 s long poll scaled by poll_scale=0.05
    [last] = green.journal("receiveNotification")[-1:]
    assert last["status"] == 200


def test_send_produces_outgoing_notifications_for_polling(
    green: FakeGreenApi, green_sdk: API.GreenAPI
) -> None:
    id_message = green_sdk.sending.sendMessage(CHAT, "Your room is ready").data["idMessage"]
    wait_until(lambda: len(green.notifications()["queue"]) == 4)

    seen = []
    while (item := green_sdk.receiving.receiveNotification().data) is not None:
        seen.append(item["body"])
        green_sdk.receiving.deleteNotification(item["receiptId"])

    assert [b["typeWebhook"] for b in seen] == ["outgoingAPIMessageReceived"] + ["outgoingMessageStatus"] * 3
    assert {b["idMessage"] for b in seen} == {id_message}
    assert seen[0]["senderData"]["chatId"] == CHAT
    assert seen[0]["messageData"]["textMessageData"]["textMessage"] == "Your room is ready"
    assert [b["status"] for b in seen[1:]] == ["sent", "delivered", "read"]
    assert all(b["sendByApi"] is True and b["chatId"] == CHAT for b in seen[1:])


def test_last_outgoing_and_incoming_messages(green: FakeGreenApi, green_sdk: API.GreenAPI) -> None:
    first = green_sdk.sending.sendMessage(CHAT, "one").data["idMessage"]
    second = green_sdk.sending.sendMessage(CHAT, "two").data["idMessage"]
    green.inject_inbound(CHAT, "see https://example.com/map please")
    wait_until(lambda: all(m["statusMessage"] == "read" for m in green.sent_messages()))

    outgoing = green_sdk.journals.lastOutgoingMessages(minutes=10).data
    incoming = green_sdk.journals.lastIncomingMessages().data

    assert [m["idMessage"] for m in outgoing] == [second, first]  # newest first
    assert outgoing[0] == {
        "type": "outgoing",
        "idMessage": second,
        "timestamp": outgoing[0]["timestamp"],
        "statusMessage": "read",
        "typeMessage": "textMessage",
        "chatId": CHAT,
        "textMessage": "two",
        "sendByApi": True,
    }
    assert incoming[0]["typeMessage"] == "extendedTextMessage"
    assert incoming[0]["textMessage"] == "see https://example.com/map please"


def test_sdk_resends_send_message_on_429_as_documented(green: FakeGreenApi, green_sdk: API.GreenAPI) -> None:
    rule = green.add_fault(
        {"match": {"method_name": "sendMessage"}, "mode": "rate_limit", "retry_after": 1, "count": 2}
    )

    started = time.monotonic()
    response = green_sdk.sending.sendMessage(CHAT, "Hello")
    elapsed = time.monotonic() - started

    arrivals = green.journal("sendMessage")
    assert [a["status"] for a in arrivals] == [429, 429, 200]
    assert [a["rule"]["id"] if a["rule"] else None for a in arrivals] == [rule["id"], rule["id"], None]
    assert arrivals[0]["response_headers"]["Retry-After"] == "1"
    assert arrivals[2]["time"] - arrivals[0]["time"] >= 1.8  # Retry-After: 1 honoured twice
    assert response.code == 200
    assert elapsed < 5
    assert len({str(a["body"]) for a in arrivals}) == 1  # the very same POST, re-sent


def test_lost_response_makes_the_sdk_send_a_duplicate(green: FakeGreenApi, green_sdk: API.GreenAPI) -> None:
    green.add_fault(
        {"match": {"method_name": "sendMessage"}, "mode": "reset", "after_process": True, "count": 1}
    )

    response = green_sdk.sending.sendMessage(CHAT, "Your taxi is here")

    assert response.code == 200
    sent = green.sent_messages()
    assert [m["textMessage"] for m in sent] == ["Your taxi is here", "Your taxi is here"]
    assert sent[0]["idMessage"] != sent[1]["idMessage"]
    assert [a["outcome"] for a in green.journal("sendMessage")] == ["reset", "response"]


def test_staff_writing_from_the_phone_queues_the_documented_outgoing_message_received(
    green: FakeGreenApi, green_sdk: API.GreenAPI
) -> None:
    import requests

    from messaging.notifications import OutgoingPhoneMessage, parse_notification

    api_sent = green_sdk.sending.sendMessage(CHAT, "Your room is ready").data["idMessage"]
    reply = requests.post(
        f"{green.url}/__fake__/outgoing", json={"chatId": CHAT, "text": "Hi, Ana here"}, timeout=5
    )
    assert reply.status_code == 200
    id_message = reply.json()["idMessage"]

    seen = []
    while (item := green_sdk.receiving.receiveNotification().data) is not None:
        seen.append(item["body"])
        green_sdk.receiving.deleteNotification(item["receiptId"])
    [phone] = [b for b in seen if b["typeWebhook"] == "outgoingMessageReceived"]
    [api] = [b for b in seen if b["typeWebhook"] == "outgoingAPIMessageReceived"]
    # The same format as the API's own journal notification (docs/providers.md §1.6), but its own id.
    assert set(phone) == set(api)
    assert set(phone["senderData"]) == set(api["senderData"])
    assert phone["idMessage"] == id_message != api_sent
    assert phone["senderData"]["chatId"] == CHAT
    assert phone["senderData"]["sender"] == green.wid
    assert phone["messageData"] == {
        "typeMessage": "textMessage",
        "textMessageData": {"textMessage": "Hi, Ana here"},
    }
    parsed = parse_notification(phone)
    assert isinstance(parsed, OutgoingPhoneMessage)
    assert (parsed.chat_id, parsed.text, parsed.id_message) == (CHAT, "Hi, Ana here", id_message)

    bad = requests.post(f"{green.url}/__fake__/outgoing", json={"chatId": CHAT}, timeout=5)
    assert bad.status_code == 400
