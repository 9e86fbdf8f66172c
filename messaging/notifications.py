"""Parse Green API webhook notifications into typed values (docs/providers.md §1.5).

Pure functions, no ORM: the view validates with :func:`parse_notification` and hands the result
to one service. Unknown ``typeWebhook`` values parse to :class:`Ignored`; a known type missing a
required field raises :class:`~hotelbot.exceptions.ValidationFailed` listing the fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hotelbot.exceptions import ValidationFailed

# typeMessage values whose text we read (whatsapp-chatbot-python handler.py reads the same).
TEXT_TYPES = frozenset({"textMessage", "extendedTextMessage", "quotedMessage"})
OUTGOING_STATUSES = frozenset(
    {"sent", "delivered", "read", "failed", "fail", "noAccount", "notInGroup", "yellowCard"}
)


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    id_instance: str
    id_message: str
    chat_id: str
    sender_name: str
    type_message: str
    text: str
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class OutgoingStatus:
    id_instance: str
    id_message: str
    status: str
    description: str
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class OutgoingApiMessage:
    id_instance: str
    id_message: str
    chat_id: str
    text: str
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class StateChanged:
    id_instance: str
    state: str
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class Ignored:
    type_webhook: str


Notification = IncomingMessage | OutgoingStatus | OutgoingApiMessage | StateChanged | Ignored


class _Fields:
    """Collects every missing/invalid field so the 400 names them all at once."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.errors: dict[str, str] = {}

    def str_at(self, *path: str, required: bool = True) -> str:
        node: Any = self.data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str) and node:
            return node
        if isinstance(node, int) and not isinstance(node, bool):
            return str(node)
        if required:
            self.errors[".".join(path)] = "This field is required." if node is None else "Must be a string."
        return ""

    def timestamp(self) -> datetime:
        raw = self.data.get("timestamp")
        if isinstance(raw, int | float) and not isinstance(raw, bool) and raw >= 0:
            return datetime.fromtimestamp(raw, tz=UTC)
        self.errors["timestamp"] = "Must be a unix timestamp in seconds."
        return datetime.fromtimestamp(0, tz=UTC)

    def done(self) -> None:
        if self.errors:
            raise ValidationFailed("The notification is missing required fields.", details=self.errors)


def _message_text(message_data: Any) -> tuple[str, str]:
    if not isinstance(message_data, dict):
        return "", ""
    type_message = str(message_data.get("typeMessage") or "")
    text: Any = ""
    if type_message == "textMessage":
        text = (message_data.get("textMessageData") or {}).get("textMessage", "")
    elif type_message in {"extendedTextMessage", "quotedMessage"}:
        text = (message_data.get("extendedTextMessageData") or {}).get("text", "")
    return type_message, text if isinstance(text, str) else ""


def _normalise_chat_id(chat_id: str) -> str:
    """Green API has sent ``@s.whatsapp.net`` and ``:3`` device suffixes (green-api issues #165, #187)."""
    user, _, domain = chat_id.partition("@")
    user = user.split(":", 1)[0]
    if domain == "s.whatsapp.net":
        domain = "c.us"
    return f"{user}@{domain}" if domain else user


def parse_notification(data: Any) -> Notification:
    if not isinstance(data, dict):
        raise ValidationFailed("The notification must be a JSON object.")
    type_webhook = data.get("typeWebhook")
    if not isinstance(type_webhook, str) or not type_webhook:
        raise ValidationFailed("The notification has no typeWebhook.", details={"typeWebhook": "Required."})
    f = _Fields(data)
    if type_webhook == "incomingMessageReceived":
        result: Notification = _incoming(f)
    elif type_webhook == "outgoingMessageStatus":
        result = OutgoingStatus(
            id_instance=f.str_at("instanceData", "idInstance"),
            id_message=f.str_at("idMessage"),
            status=f.str_at("status"),
            description=f.str_at("description", required=False),
            timestamp=f.timestamp(),
        )
        if result.status and result.status not in OUTGOING_STATUSES:
            f.errors["status"] = f"Unknown status {result.status!r}."
    elif type_webhook == "outgoingAPIMessageReceived":
        _type_message, text = _message_text(data.get("messageData"))
        result = OutgoingApiMessage(
            id_instance=f.str_at("instanceData", "idInstance"),
            id_message=f.str_at("idMessage"),
            chat_id=_normalise_chat_id(f.str_at("senderData", "chatId")),
            text=text,
            timestamp=f.timestamp(),
        )
    elif type_webhook == "stateInstanceChanged":
        result = StateChanged(
            id_instance=f.str_at("instanceData", "idInstance"),
            state=f.str_at("stateInstance"),
            timestamp=f.timestamp(),
        )
    else:
        return Ignored(type_webhook=type_webhook)
    f.done()
    return result


def _incoming(f: _Fields) -> IncomingMessage:
    message_data = f.data.get("messageData")
    if not isinstance(message_data, dict) or not message_data.get("typeMessage"):
        f.errors["messageData.typeMessage"] = "This field is required."
    type_message, text = _message_text(message_data)
    return IncomingMessage(
        id_instance=f.str_at("instanceData", "idInstance"),
        id_message=f.str_at("idMessage"),
        chat_id=_normalise_chat_id(f.str_at("senderData", "chatId")),
        sender_name=f.str_at("senderData", "senderName", required=False),
        type_message=type_message,
        text=text,
        timestamp=f.timestamp(),
    )
