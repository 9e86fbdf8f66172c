from __future__ import annotations

import pytest

from hotelbot.exceptions import ValidationFailed
from messaging.notifications import (
    Ignored,
    IncomingMessage,
    OutgoingApiMessage,
    OutgoingPhoneMessage,
    OutgoingStatus,
    StateChanged,
    parse_notification,
)
from tests.messaging import payloads


def test_text_message_is_parsed_with_instance_as_string():
    parsed = parse_notification(payloads.incoming_text(id_message="ABC", text="hi there"))
    assert isinstance(parsed, IncomingMessage)
    assert parsed.id_instance == "1101000001"
    assert (parsed.id_message, parsed.text, parsed.type_message) == ("ABC", "hi there", "textMessage")
    assert parsed.chat_id == "79001234568@c.us"
    assert parsed.sender_name == "Ana"


@pytest.mark.parametrize("type_message", ["extendedTextMessage", "quotedMessage"])
def test_extended_and_quoted_text_read_from_extended_data(type_message):
    body = payloads.incoming_text(id_message="X1")
    body["messageData"] = {
        "typeMessage": type_message,
        "extendedTextMessageData": {"text": "see https://example.org", "description": "", "title": ""},
    }
    parsed = parse_notification(body)
    assert isinstance(parsed, IncomingMessage)
    assert parsed.text == "see https://example.org"
    assert parsed.type_message == type_message


def test_non_text_message_keeps_its_type_and_empty_text():
    body = payloads.incoming_text(id_message="IMG")
    body["messageData"] = {"typeMessage": "imageMessage", "fileMessageData": {"downloadUrl": "x"}}
    parsed = parse_notification(body)
    assert isinstance(parsed, IncomingMessage)
    assert (parsed.type_message, parsed.text) == ("imageMessage", "")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("79001234568@s.whatsapp.net", "79001234568@c.us"), ("79001234568:3@c.us", "79001234568@c.us")],
)
def test_chat_id_quirks_are_normalised(raw, expected):
    parsed = parse_notification(payloads.incoming_text(id_message="Q", chat_id=raw))
    assert isinstance(parsed, IncomingMessage)
    assert parsed.chat_id == expected


def test_missing_fields_are_all_named():
    body = payloads.incoming_text(id_message="A")
    del body["idMessage"]
    del body["senderData"]
    with pytest.raises(ValidationFailed) as info:
        parse_notification(body)
    assert set(info.value.details) == {"idMessage", "senderData.chatId"}


@pytest.mark.parametrize("body", [[], "text", None, {"instanceData": {}}])
def test_non_object_or_untyped_body_is_invalid(body):
    with pytest.raises(ValidationFailed):
        parse_notification(body)


def test_status_state_and_journal_notifications():
    status = parse_notification(
        payloads.outgoing_status(id_message="S1", status="noAccount", description="SWE004")
    )
    assert isinstance(status, OutgoingStatus)
    assert (status.status, status.description) == ("noAccount", "SWE004")
    journal = parse_notification(payloads.outgoing_api_message(id_message="J1", text="hello"))
    assert isinstance(journal, OutgoingApiMessage)
    assert journal.text == "hello"
    state = parse_notification(payloads.state_changed("yellowCard"))
    assert isinstance(state, StateChanged)
    assert state.state == "yellowCard"


def test_unknown_status_value_is_invalid():
    with pytest.raises(ValidationFailed) as info:
        parse_notification(payloads.outgoing_status(id_message="S1", status="teleported"))
    assert "status" in info.value.details


def test_other_webhook_types_are_ignored():
    parsed = parse_notification({"typeWebhook": "incomingCall", "instanceData": {"idInstance": 1}})
    assert parsed == Ignored(type_webhook="incomingCall")


def test_a_message_staff_sent_from_the_phone_is_parsed_and_every_missing_field_named():
    phone = parse_notification(payloads.outgoing_phone_message(id_message="P1", text="Hi, reception here"))
    assert isinstance(phone, OutgoingPhoneMessage)
    assert (phone.id_message, phone.chat_id, phone.type_message, phone.text) == (
        "P1",
        payloads.CHAT,
        "textMessage",
        "Hi, reception here",
    )
    body = payloads.outgoing_phone_message(id_message="P2", text="x")
    del body["idMessage"], body["senderData"], body["messageData"]
    with pytest.raises(ValidationFailed) as info:
        parse_notification(body)
    assert set(info.value.details) == {"idMessage", "senderData.chatId", "messageData.typeMessage"}
