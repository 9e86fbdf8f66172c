"""Read and parse Green API webhook notifications into typed values (docs/providers.md §1.5).

Pure functions, no ORM. :func:`read_body` reads at most ``limit`` bytes of a request body;
:func:`parse_webhook_body` turns those bytes into a typed notification or an :class:`Unparseable`
(reason category + every bad field), which the intake service quarantines with a 200 (Green API
delivers in order and resends after any non-200, so a bad notification must not block a hotel).
Unknown ``typeWebhook`` values parse to :class:`Ignored`. :func:`parse_notification` raises
:class:`NotificationInvalid` naming every bad field.

What we keep must fit the columns it goes to: identifiers (idMessage, chatId, idInstance, enum
values) that do not fit are invalid, never cut; free text (message text, sender name, status
description) is cut to its limit. NUL and lone surrogates (a broken emoji sent as ``"\ud83d"``),
which PostgreSQL and UTF-8 cannot store, make an identifier invalid; in free text they are replaced
by U+FFFD (:data:`REPLACEMENT`) and the field is named in the notification's ``cleaned``, so the
message is stored and answered and the intake keeps the original body for staff.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, BinaryIO

from hotelbot.exceptions import ValidationFailed

# typeMessage values whose text we read (whatsapp-chatbot-python handler.py reads the same).
TEXT_TYPES = frozenset({"textMessage", "extendedTextMessage", "quotedMessage"})
OUTGOING_STATUSES = frozenset(
    {"sent", "delivered", "read", "failed", "fail", "noAccount", "notInGroup", "yellowCard"}
)
INSTANCE_STATES = frozenset({"notAuthorized", "authorized", "blocked", "sleepMode", "starting", "yellowCard"})
# Limits: the columns these values are stored in (messaging/models.py), WhatsApp's text limit.
ID_MESSAGE_MAX = 64  # Message.provider_message_id, DeferredStatus.id_message
CHAT_ID_MAX = 64  # Guest.chat_id
INSTANCE_ID_MAX = 32  # Hotel.green_api_instance_id
TYPE_MESSAGE_MAX = 40  # Message.message_type
SENDER_NAME_MAX = 200  # Guest.display_name (free text: cut)
DESCRIPTION_MAX = 300  # DeferredStatus.description, Message.status_detail (free text: cut)
TEXT_MAX = 65536  # WhatsApp's message length (free text: cut)
TIMESTAMP_MAX = 4102444800  # 2100-01-01: anything later is not a unix time in seconds
_UNSAFE = re.compile("[\x00\ud800-\udfff]")
#: What a NUL or a lone surrogate in free text becomes (U+FFFD REPLACEMENT CHARACTER).
REPLACEMENT = "\ufffd"


class Reason(StrEnum):
    """Bounded reason categories of a quarantined notification (also the metric label)."""

    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING = "missing"
    WRONG_TYPE = "wrong_type"
    OUT_OF_RANGE = "out_of_range"
    TOO_LONG = "too_long"
    UNSAFE_TEXT = "unsafe_text"
    UNKNOWN_VALUE = "unknown_value"
    UNKNOWN_INSTANCE = "unknown_instance"
    STORAGE_ERROR = "storage_error"


class NotificationInvalid(ValidationFailed):
    """A notification that cannot be parsed; ``reason`` is the category of its first bad field."""

    def __init__(self, message: str, *, reason: Reason, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RawBody:
    """The first bytes of a request body: all of it unless ``over_limit``."""

    data: bytes
    size: int  # bytes received, or the declared Content-Length when larger than what was read
    over_limit: bool = False


@dataclass(frozen=True, slots=True)
class Unparseable:
    """A body that is not a notification we can store; the service quarantines it (200)."""

    reason: Reason
    message: str
    details: dict[str, str] = field(default_factory=dict)
    payload: Any = None  # the decoded JSON, when the body was JSON
    subject: str = ""  # the instance id, when one could be read


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    id_instance: str
    id_message: str
    chat_id: str
    sender_name: str
    type_message: str
    text: str
    timestamp: datetime
    cleaned: tuple[str, ...] = ()  # free-text fields whose NUL / lone surrogates became U+FFFD


@dataclass(frozen=True, slots=True)
class OutgoingStatus:
    id_instance: str
    id_message: str
    status: str
    description: str
    timestamp: datetime
    cleaned: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OutgoingApiMessage:
    id_instance: str
    id_message: str
    chat_id: str
    text: str
    timestamp: datetime
    cleaned: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OutgoingPhoneMessage:
    """``outgoingMessageReceived``: staff wrote to a chat from the hotel's own WhatsApp phone."""

    id_instance: str
    id_message: str
    chat_id: str
    type_message: str
    text: str
    timestamp: datetime
    cleaned: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StateChanged:
    id_instance: str
    state: str
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class Ignored:
    type_webhook: str


Notification = (
    IncomingMessage | OutgoingStatus | OutgoingApiMessage | OutgoingPhoneMessage | StateChanged | Ignored
)


class _Fields:
    """Collects every missing or invalid field so the quarantine reason names them all at once."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.errors: dict[str, str] = {}
        self.reason: Reason | None = None
        self.cleaned: list[str] = []  # free-text fields whose unsafe characters were replaced

    def error(self, name: str, reason: Reason, message: str) -> None:
        self.errors.setdefault(name, message)
        self.reason = self.reason or reason

    def node_at(self, *path: str) -> Any:
        """The value at ``path``; None when absent. A non-object on the way is a wrong type."""
        node: Any = self.data
        for depth, key in enumerate(path):
            if node is None:
                return None
            if not isinstance(node, dict):
                self.error(".".join(path[:depth]), Reason.WRONG_TYPE, "Must be an object.")
                return None
            node = node.get(key)
        return node

    def text(self, value: Any, name: str, *, max_len: int | None = None, cut: int | None = None) -> str:
        """A string value: over ``max_len`` invalid, over ``cut`` cut. Unsafe characters (NUL, lone
        surrogates) make an identifier invalid; free text (a ``cut`` is given) gets U+FFFD instead."""
        if not isinstance(value, str):
            self.error(name, Reason.WRONG_TYPE, "Must be a string.")
            return ""
        if _UNSAFE.search(value):
            if cut is None:
                self.error(name, Reason.UNSAFE_TEXT, "Contains a NUL character or a lone surrogate.")
                return ""
            value = _UNSAFE.sub(REPLACEMENT, value)  # one character for one: the cut stays the same
            self.cleaned.append(name)
        if max_len is not None and len(value) > max_len:
            self.error(name, Reason.TOO_LONG, f"Longer than {max_len} characters.")
            return ""
        return value[:cut] if cut is not None else value

    def str_at(
        self, *path: str, required: bool = True, max_len: int | None = None, cut: int | None = None
    ) -> str:
        name = ".".join(path)
        node = self.node_at(*path)
        if node is None or node == "":
            if required:
                self.error(name, Reason.MISSING, "This field is required.")
            return ""
        if isinstance(node, int) and not isinstance(node, bool):
            node = str(node)
        return self.text(node, name, max_len=max_len, cut=cut)

    def timestamp(self) -> datetime:
        raw = self.data.get("timestamp")
        if raw is None:
            self.error("timestamp", Reason.MISSING, "This field is required.")
        elif not isinstance(raw, int | float) or isinstance(raw, bool):
            self.error("timestamp", Reason.WRONG_TYPE, "Must be a unix timestamp in seconds.")
        elif not (isinstance(raw, int) or math.isfinite(raw)) or not 0 <= raw <= TIMESTAMP_MAX:
            self.error(
                "timestamp", Reason.OUT_OF_RANGE, f"Must be a unix time in seconds (0-{TIMESTAMP_MAX})."
            )
        else:
            return datetime.fromtimestamp(raw, tz=UTC)
        return datetime.fromtimestamp(0, tz=UTC)

    def message_text(self, *, required: bool) -> tuple[str, str]:
        """``messageData``: its typeMessage and, for the text-bearing types, the text (cut)."""
        message_data = self.node_at("messageData")
        if message_data is None:
            if required:
                self.error("messageData.typeMessage", Reason.MISSING, "This field is required.")
            return "", ""
        if not isinstance(message_data, dict):
            self.error("messageData", Reason.WRONG_TYPE, "Must be an object.")
            return "", ""
        type_message = self.str_at("messageData", "typeMessage", required=required, max_len=TYPE_MESSAGE_MAX)
        if type_message == "textMessage":
            path = ("messageData", "textMessageData", "textMessage")
        elif type_message in {"extendedTextMessage", "quotedMessage"}:
            path = ("messageData", "extendedTextMessageData", "text")
        else:
            return type_message, ""
        container = self.node_at(*path[:-1])
        if container is not None and not isinstance(container, dict):
            self.error(".".join(path[:-1]), Reason.WRONG_TYPE, "Must be an object.")
            return type_message, ""
        text = self.node_at(*path)
        if text is None:
            return type_message, ""
        return type_message, self.text(text, ".".join(path), cut=TEXT_MAX)

    def done(self) -> None:
        if self.errors:
            raise NotificationInvalid(
                "The notification has missing or invalid fields.",
                reason=self.reason or Reason.MISSING,
                details=self.errors,
            )


def _normalise_chat_id(chat_id: str) -> str:
    """Green API has sent ``@s.whatsapp.net`` and ``:3`` device suffixes (green-api issues #165, #187)."""
    if not chat_id:
        return chat_id
    user, _, domain = chat_id.partition("@")
    user = user.split(":", 1)[0]
    if domain == "s.whatsapp.net":
        domain = "c.us"
    return f"{user}@{domain}" if domain else user


def _chat_id(f: _Fields, *path: str) -> str:
    chat_id = _normalise_chat_id(f.str_at(*path))
    if len(chat_id) > CHAT_ID_MAX:
        f.error(".".join(path), Reason.TOO_LONG, f"Longer than {CHAT_ID_MAX} characters.")
        return ""
    return chat_id


def parse_notification(data: Any) -> Notification:
    """A decoded JSON body → a typed notification; raises :class:`NotificationInvalid`."""
    if not isinstance(data, dict):
        raise NotificationInvalid("The notification must be a JSON object.", reason=Reason.NOT_OBJECT)
    f = _Fields(data)
    type_webhook = f.str_at("typeWebhook", max_len=100)
    f.done()
    if type_webhook == "incomingMessageReceived":
        result: Notification = _incoming(f)
    elif type_webhook == "outgoingMessageStatus":
        result = OutgoingStatus(
            id_instance=f.str_at("instanceData", "idInstance", max_len=INSTANCE_ID_MAX),
            id_message=f.str_at("idMessage", max_len=ID_MESSAGE_MAX),
            status=f.str_at("status", max_len=40),
            description=f.str_at("description", required=False, cut=DESCRIPTION_MAX),
            timestamp=f.timestamp(),
            cleaned=tuple(f.cleaned),
        )
        if result.status and result.status not in OUTGOING_STATUSES:
            f.error("status", Reason.UNKNOWN_VALUE, f"Unknown status {result.status!r}.")
    elif type_webhook == "outgoingAPIMessageReceived":
        fields = _chat_message(f, type_required=False)
        del fields["type_message"]
        result = OutgoingApiMessage(**fields)
    elif type_webhook == "outgoingMessageReceived":
        result = OutgoingPhoneMessage(**_chat_message(f, type_required=True))
    elif type_webhook == "stateInstanceChanged":
        result = StateChanged(
            id_instance=f.str_at("instanceData", "idInstance", max_len=INSTANCE_ID_MAX),
            state=f.str_at("stateInstance", max_len=40),
            timestamp=f.timestamp(),
        )
        if result.state and result.state not in INSTANCE_STATES:
            f.error("stateInstance", Reason.UNKNOWN_VALUE, f"Unknown state {result.state!r}.")
    else:
        return Ignored(type_webhook=type_webhook)
    f.done()
    return result


def _chat_message(f: _Fields, *, type_required: bool, sender: bool = False) -> dict[str, Any]:
    """The fields of a message notification (incoming, and both outgoing journals: one format)."""
    type_message, text = f.message_text(required=type_required)
    fields: dict[str, Any] = {
        "id_instance": f.str_at("instanceData", "idInstance", max_len=INSTANCE_ID_MAX),
        "id_message": f.str_at("idMessage", max_len=ID_MESSAGE_MAX),
        "chat_id": _chat_id(f, "senderData", "chatId"),
        "type_message": type_message,
        "text": text,
    }
    if sender:
        fields["sender_name"] = f.str_at("senderData", "senderName", required=False, cut=SENDER_NAME_MAX)
    fields["timestamp"] = f.timestamp()
    fields["cleaned"] = tuple(f.cleaned)
    return fields


def _incoming(f: _Fields) -> IncomingMessage:
    return IncomingMessage(**_chat_message(f, type_required=True, sender=True))


# --- reading the request ------------------------------------------------------------------------
DRAIN_CHUNK = 64 * 1024


def read_body(
    stream: BinaryIO | None,
    *,
    content_length: int | None,
    limit: int,
    keep: int,
    drain: int | None = None,
) -> RawBody:
    """Read a request body without ever holding more than ``limit + 1`` bytes of it.

    A body declared (or found) larger than ``limit`` keeps only its first ``keep`` bytes. The rest
    is read and thrown away (:func:`drain_body`), ``DRAIN_CHUNK`` bytes at a time, when the whole
    body is at most ``drain`` bytes (None: ``WEBHOOK_DRAIN_MAX_BYTES``): gunicorn closes the
    connection after the answer, and a client that writes its whole body before reading (most HTTP
    clients) would meet a reset instead of our 200 if the rest were left unread. A larger body is
    not read on (the client sees the connection close; it is not a notification Green API sends).
    """
    if stream is None:
        return RawBody(data=b"", size=0)
    if drain is None:
        from django.conf import settings

        drain = int(settings.WEBHOOK_DRAIN_MAX_BYTES)
    if content_length is not None and content_length > limit:
        data = stream.read(keep)
        if content_length <= drain:
            drain_body(stream, budget=content_length - len(data))
        return RawBody(data=data, size=content_length, over_limit=True)
    data = stream.read(limit + 1)
    if len(data) > limit:
        size = len(data) + drain_body(stream, budget=max(0, drain - len(data)))
        return RawBody(data=data[:keep], size=size, over_limit=True)
    return RawBody(data=data, size=len(data))


def drain_body(stream: BinaryIO, *, budget: int) -> int:
    """Read and discard at most ``budget`` bytes of ``stream`` (to its end); returns the bytes read."""
    drained = 0
    while drained < budget:
        chunk = stream.read(min(DRAIN_CHUNK, budget - drained))
        if not chunk:
            break
        drained += len(chunk)
    return drained


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _subject(data: Any) -> str:
    instance = data.get("instanceData") if isinstance(data, dict) else None
    value = instance.get("idInstance") if isinstance(instance, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value[:200] if isinstance(value, str) else ""


def instance_of(notification: Notification | Unparseable) -> str:
    """The Green API instance a parsed body came from ("" when it does not say)."""
    if isinstance(notification, Unparseable):
        return notification.subject
    return str(getattr(notification, "id_instance", ""))


def parse_webhook_body(body: RawBody) -> Notification | Unparseable:
    """The webhook's bytes → a typed notification, or what is wrong with them (never raises)."""
    if body.over_limit:
        return Unparseable(
            reason=Reason.TOO_LARGE, message=f"The body has {body.size} bytes, more than the limit."
        )
    try:
        data = json.loads(body.data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, digit limits
        return Unparseable(reason=Reason.NOT_JSON, message=f"The body is not JSON: {type(e).__name__}.")
    try:
        return parse_notification(data)
    except NotificationInvalid as e:
        return Unparseable(
            reason=e.reason,
            message=e.message,
            details={str(k): str(v) for k, v in e.details.items()},
            payload=data,
            subject=_subject(data),
        )
