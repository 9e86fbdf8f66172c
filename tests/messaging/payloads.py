"""Doc-shaped Green API notifications (docs/providers.md §1.5) for tests."""

from __future__ import annotations

import time
from typing import Any

INSTANCE = 1101000001

#: The guest chat the payloads and the reply-job fixture use.
CHAT = "79001234568@c.us"


def _instance(id_instance: int = INSTANCE) -> dict[str, Any]:
    return {"idInstance": id_instance, "wid": "11001234567@c.us", "typeInstance": "whatsapp"}


def incoming_text(
    *,
    id_message: str,
    text: str = "What time is check-out?",
    chat_id: str = CHAT,
    id_instance: int = INSTANCE,
    sender_name: str = "Ana",
) -> dict[str, Any]:
    return {
        "typeWebhook": "incomingMessageReceived",
        "instanceData": _instance(id_instance),
        "timestamp": int(time.time()),
        "idMessage": id_message,
        "senderData": {
            "chatId": chat_id,
            "sender": chat_id,
            "chatName": sender_name,
            "senderName": sender_name,
            "senderContactName": sender_name,
        },
        "messageData": {"typeMessage": "textMessage", "textMessageData": {"textMessage": text}},
    }


def outgoing_status(
    *, id_message: str, status: str, chat_id: str = CHAT, description: str = ""
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "typeWebhook": "outgoingMessageStatus",
        "chatId": chat_id,
        "instanceData": _instance(),
        "timestamp": int(time.time()),
        "idMessage": id_message,
        "status": status,
        "sendByApi": True,
    }
    if description:
        body["description"] = description
    return body


def outgoing_api_message(*, id_message: str, text: str, chat_id: str = CHAT) -> dict[str, Any]:
    body = incoming_text(id_message=id_message, text=text, chat_id=chat_id)
    body["typeWebhook"] = "outgoingAPIMessageReceived"
    return body


def state_changed(state: str = "sleepMode") -> dict[str, Any]:
    return {
        "typeWebhook": "stateInstanceChanged",
        "instanceData": _instance(),
        "timestamp": int(time.time()),
        "stateInstance": state,
    }


def outgoing_phone_message(*, id_message: str, text: str, chat_id: str = CHAT) -> dict[str, Any]:
    """``outgoingMessageReceived``: staff wrote from the hotel's phone (the incoming format, §1.6)."""
    body = incoming_text(id_message=id_message, text=text, chat_id=chat_id)
    body["typeWebhook"] = "outgoingMessageReceived"
    body["senderData"] = {**body["senderData"], "sender": _instance()["wid"], "senderName": ""}
    return body
