"""A faithful fake of the Green API (WhatsApp gateway) HTTP API, per ``docs/providers.md`` §3.7.

What it does, briefly:

* Serves ``/{optional v3}/waInstance{idInstance}/{method}/{apiTokenInstance}[/{receiptId}]`` with the
  documented status codes and error texts, case-insensitive method names and the per-method rate
  limits of ``docs/providers.md`` §1.7.
* ``sendMessage`` validates like the real API, returns a 20-hex ``idMessage`` and then produces the
  notifications the real service would: ``outgoingAPIMessageReceived`` at once and
  ``outgoingMessageStatus`` ``sent`` -> ``delivered`` -> ``read`` after ``status_delays``.
* Notifications go to one FIFO queue. With a ``webhookUrl`` a background thread pushes the head item
  (one in flight, ``Authorization: Bearer <webhookUrlToken>``) and redelivers the same item after
  ``redelivery_delay`` on anything but 200; without one, the queue is read by
  ``receiveNotification`` / ``deleteNotification`` (long poll, literal ``null`` when empty).
* Staff on the hotel's phone: :meth:`FakeGreenApi.inject_outgoing` (``POST /__fake__/outgoing``
  ``{chatId, text, idMessage?}``) queues ``outgoingMessageReceived``, the format of an incoming
  message (``docs/providers.md`` §1.6), if ``outgoingMessageWebhook`` is "yes".
* Test hooks: :meth:`FakeGreenApi.inject_inbound`, :meth:`FakeGreenApi.set_state`,
  :meth:`FakeGreenApi.set_chat_status`, :meth:`FakeGreenApi.configure` and their control endpoints.
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import http.client
import itertools
import json
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from .base import ControlError, FakeRequest, FakeResponse, FakeServer, json_response, text_response

ROUTE = re.compile(
    r"^(?:/v3)?/waInstance(?P<id>[^/]*)/(?P<method>[^/]+)(?:/(?P<token>[^/]*))?(?:/(?P<extra>[^/]*))?/?$"
)
CHAT_ID = re.compile(r"^\d{7,15}@c\.us$|^[\d-]+@g\.us$|^\d+@lid$")
URL_IN_TEXT = re.compile(r"(?i)\bhttps?://\S+|\bwww\.\S+")

STATES: tuple[str, ...] = ("notAuthorized", "authorized", "blocked", "sleepMode", "starting", "yellowCard")
#: States in which send methods are refused with 400.
REFUSING_STATES: dict[str, str] = {
    "starting": "instance in starting process try later",
    "notAuthorized": "instance account not authorized",
}
#: Terminal outgoing statuses a chat can be configured to produce instead of sent/delivered/read.
FAILURE_STATUSES: dict[str, str] = {
    "noAccount": "SWE004: 1000",
    "failed": "SWE001: message was not delivered",
    "notInGroup": "SWE002: the account is not a member of the group",
    "yellowCard": "SWE003: sending is suspended for this account",
}
#: Statuses that arrive even when ``outgoingWebhook`` is "no" (``docs/providers.md`` §1.5).
ALWAYS_SENT_STATUSES = frozenset({"noAccount", "failed"})
PROGRESS_STATUSES: tuple[str, ...] = ("sent", "delivered", "read")

#: Per-method requests/second (``docs/providers.md`` §1.7). ``send*`` methods not listed use ``sendmessage``.
RATE_LIMITS: dict[str, int] = {
    "sendmessage": 50,
    "receivenotification": 100,
    "deletenotification": 100,
    "getstateinstance": 1,
    "getsettings": 1,
    "setsettings": 1,
    "reboot": 1,
    "logout": 1,
    "lastincomingmessages": 1,
    "lastoutgoingmessages": 1,
    "getchathistory": 1,
    "getmessage": 10,
    "readchat": 10,
    "checkwhatsapp": 10,
    "qr": 3,
}
YES_NO_SETTINGS: tuple[str, ...] = (
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
    "sharedSession",
)
NOTIFICATION_TTL = 24 * 3600.0
DELIVERY_LOG_LIMIT = 5000
MIN_PUSH_INTERVAL = 0.02  # about 50 webhooks/s

_NGINX_HTML = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_REASONS = {
    400: "bad request data",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    499: "Client Closed Request",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}
QUOTA_466_BODY: dict[str, Any] = {
    "invokeStatus": {"method": "sendmessage", "used": 67, "total": 0, "status": "QUOTE_ALLOWED"},
    "correspondentsStatus": {
        "method": "correspondents",
        "used": 3,
        "total": 3,
        "status": "CORRESPONDENTS_QUOTE_EXCEEDED",
        "description": "Monthly quota has been exceeded. You can only send or receive messages from "
        "these numbers: 79001234567, 79001234568, 79001234569. To remove the restriction, upgrade "
        "your plan at https://console.green-api.com",
    },
}

_UNSET: Any = object()


def _new_outgoing_id() -> str:
    return secrets.token_hex(10).upper()


def _new_incoming_id() -> str:
    return secrets.token_hex(16).upper()


def _error(status: int, message: str, note: str | None = None) -> FakeResponse:
    return json_response(status, {"message": message}, note=note)


def _validation(detail: str) -> FakeResponse:
    return _error(400, f"Validation failed. Details: {detail}", note="validation")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_syntax_error(req: FakeRequest) -> FakeResponse:
    err = req.json_error
    pos = err.pos if err is not None else 0
    text = req.body.decode("utf-8", errors="replace")
    token = text[pos] if pos < len(text) else "end"
    return _error(400, f"Unexpected token {token} in JSON at position {pos}", note="bad_json")


@dataclass
class _Notification:
    receipt_id: int
    body: dict[str, Any]
    enqueued_at: float
    attempts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "receiptId": self.receipt_id,
            "body": copy.deepcopy(self.body),
            "enqueued_at": self.enqueued_at,
            "attempts": self.attempts,
        }


class FakeGreenApi(FakeServer):
    """Fake Green API instance (one instance per server)."""

    provider: ClassVar[str] = "green_api"

    def __init__(
        self,
        *,
        id_instance: str = "1101000001",
        api_token: str = "test-token",  # noqa: S107 - a fake's well-known test credential
        webhook_url: str = "",
        webhook_token: str = "",
        redelivery_delay: float = 60.0,
        push_timeout: float = 180.0,
        status_delays: Iterable[float] = (0.3, 0.6, 0.9),
        wid: str = "11001234567@c.us",
        poll_scale: float = 1.0,
        rate_limits: bool = True,
        any_instance: bool = False,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port, seed=seed)
        if not str(id_instance).isdigit():
            raise ValueError("id_instance must be digits")
        self.id_instance = str(id_instance)
        #: Answer for every idInstance (with the one ``api_token``), as if each hotel of a large
        #: deployment had its own instance, all in one state; rate limits then count per instance.
        self.any_instance = bool(any_instance)
        self.api_token = api_token
        self.wid = wid
        self._defaults: dict[str, Any] = {
            "webhook_url": webhook_url,
            "webhook_token": webhook_token,
            "redelivery_delay": float(redelivery_delay),
            "push_timeout": float(push_timeout),
            "status_delays": self._check_delays(status_delays),
            "poll_scale": float(poll_scale),
            "rate_limits": bool(rate_limits),
        }
        self._cv = threading.Condition(threading.RLock())
        self._receipt_ids = itertools.count(1)
        self._sched_seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._push_conn: http.client.HTTPConnection | None = None
        self._init_state()

    # ------------------------------------------------------------------ state
    def _init_state(self) -> None:
        d = self._defaults
        with self._cv:
            self._generation = getattr(self, "_generation", 0) + 1
            self.redelivery_delay: float = d["redelivery_delay"]
            self.push_timeout: float = d["push_timeout"]
            self.status_delays: tuple[float, float, float] = d["status_delays"]
            self.poll_scale: float = d["poll_scale"]
            self.rate_limits: bool = d["rate_limits"]
            self.push_auth: str | None = None
            self._settings: dict[str, Any] = {
                "wid": self.wid,
                "countryInstance": "",
                "typeAccount": "trial",
                "webhookUrl": d["webhook_url"],
                "webhookUrlToken": d["webhook_token"],
                "delaySendMessagesMilliseconds": 500,
                "markIncomingMessagesReaded": "no",
                "markIncomingMessagesReadedOnReply": "no",
                "sharedSession": "no",
                "outgoingWebhook": "yes",
                "outgoingMessageWebhook": "yes",
                "outgoingAPIMessageWebhook": "yes",
                "incomingWebhook": "yes",
                "deviceWebhook": "yes",
                "stateWebhook": "yes",
                "pollMessageWebhook": "yes",
                "incomingCallWebhook": "yes",
                "keepOnlineStatus": "no",
            }
            self._state = "authorized"
            self._queue: list[_Notification] = []
            self._sched: list[tuple[float, int, Callable[[], None]]] = []
            self._deliveries: deque[dict[str, Any]] = deque(maxlen=DELIVERY_LOG_LIMIT)
            self._next_push_at = 0.0
            self._outgoing: list[dict[str, Any]] = []
            self._incoming: list[dict[str, Any]] = []
            self._pending_sends: list[dict[str, Any]] = []
            self._chat_status: dict[str, str] = {}
            self._rate: dict[str, deque[float]] = {}
            self._cv.notify_all()

    def _reset_provider(self) -> None:
        self._init_state()

    def reset(self, seed: int | None = None, *, poll_scale: float | None = None) -> None:
        """Clear faults, journal, queue, logs and settings (back to constructor values)."""
        super().reset(seed)
        if poll_scale is not None:
            self.configure(poll_scale=poll_scale)

    def _reset_from_control(self, body: dict[str, Any]) -> None:
        super()._reset_from_control(body)
        if body.get("poll_scale") is not None:
            self.configure(poll_scale=body["poll_scale"])

    @staticmethod
    def _check_delays(delays: Iterable[float]) -> tuple[float, float, float]:
        try:
            values = tuple(float(x) for x in delays)
        except (TypeError, ValueError) as exc:
            raise ValueError("status_delays must be three numbers") from exc
        if len(values) != 3 or any(v < 0 for v in values) or list(values) != sorted(values):
            raise ValueError("status_delays must be three non-decreasing non-negative numbers")
        return (values[0], values[1], values[2])

    # ------------------------------------------------------------------ public Python API
    @property
    def state(self) -> str:
        return self._state

    def settings(self) -> dict[str, Any]:
        with self._cv:
            return dict(self._settings)

    def configure(
        self,
        *,
        redelivery_delay: float | None = None,
        status_delays: Iterable[float] | None = None,
        webhook_url: str | None = None,
        webhook_token: str | None = None,
        push_timeout: float | None = None,
        poll_scale: float | None = None,
        rate_limits: bool | None = None,
        push_auth: str | None = _UNSET,
    ) -> dict[str, Any]:
        """Adjust run-time behaviour; returns the resulting configuration.

        ``push_auth``: ``None`` (correct Bearer header), ``"missing"`` or ``"wrong"`` (push fault).
        """
        delays = self._check_delays(status_delays) if status_delays is not None else None
        for name, value in (
            ("redelivery_delay", redelivery_delay),
            ("push_timeout", push_timeout),
            ("poll_scale", poll_scale),
        ):
            if value is not None and (
                not isinstance(value, int | float) or isinstance(value, bool) or value < 0
            ):
                raise ValueError(f"{name} must be a non-negative number")
        if push_timeout is not None and push_timeout <= 0:
            raise ValueError("push_timeout must be positive")
        for name, text in (("webhook_url", webhook_url), ("webhook_token", webhook_token)):
            if text is not None and not isinstance(text, str):
                raise ValueError(f"{name} must be a string")
        if push_auth is not _UNSET and push_auth not in (None, "missing", "wrong"):
            raise ValueError('push_auth must be null, "missing" or "wrong"')
        with self._cv:
            if redelivery_delay is not None:
                self.redelivery_delay = float(redelivery_delay)
                self._next_push_at = 0.0
            if delays is not None:
                self.status_delays = delays
            if webhook_url is not None and webhook_url != self._settings["webhookUrl"]:
                self._settings["webhookUrl"] = webhook_url
                self._next_push_at = 0.0
            if webhook_token is not None:
                self._settings["webhookUrlToken"] = webhook_token
            if push_timeout is not None:
                self.push_timeout = float(push_timeout)
            if poll_scale is not None:
                self.poll_scale = float(poll_scale)
            if rate_limits is not None:
                self.rate_limits = bool(rate_limits)
            if push_auth is not _UNSET:
                self.push_auth = push_auth
            self._cv.notify_all()
            return self.config()

    def config(self) -> dict[str, Any]:
        with self._cv:
            return {
                "id_instance": self.id_instance,
                "redelivery_delay": self.redelivery_delay,
                "push_timeout": self.push_timeout,
                "status_delays": list(self.status_delays),
                "webhook_url": self._settings["webhookUrl"],
                "webhook_token": self._settings["webhookUrlToken"],
                "poll_scale": self.poll_scale,
                "rate_limits": self.rate_limits,
                "push_auth": self.push_auth,
                "state": self._state,
            }

    def set_state(self, state: str) -> None:
        """Change ``stateInstance``; enqueues ``stateInstanceChanged`` when ``stateWebhook`` is yes."""
        if state not in STATES:
            raise ValueError(f"stateInstance must be one of: {', '.join(STATES)}")
        with self._cv:
            if state == self._state:
                return
            self._state = state
            if self._settings["stateWebhook"] == "yes":
                self._enqueue(
                    {
                        "typeWebhook": "stateInstanceChanged",
                        "instanceData": self._instance_data(),
                        "timestamp": int(time.time()),
                        "stateInstance": state,
                    }
                )
            if state == "authorized":
                pending, self._pending_sends = self._pending_sends, []
                for msg in pending:
                    self._dispatch_send(msg)

    def set_chat_status(self, chat_id: str, status: str | None) -> None:
        """Make sends to ``chat_id`` end in ``status`` (noAccount, failed, notInGroup, yellowCard, or
        sent/delivered to stop the progression there); ``None`` restores sent/delivered/read."""
        allowed = (*FAILURE_STATUSES, "sent", "delivered", "read")
        if status is not None and status not in allowed:
            raise ValueError(f"status must be one of: {', '.join(allowed)} or null")
        if not isinstance(chat_id, str) or not chat_id:
            raise ValueError("chatId must be a non-empty string")
        with self._cv:
            if status is None or status == "read":
                self._chat_status.pop(chat_id, None)
            else:
                self._chat_status[chat_id] = status

    def inject_inbound(
        self,
        chat_id: str,
        text: str,
        sender_name: str = "Guest",
        id_message: str | None = None,
        deliveries: int = 1,
        *,
        sender: str | None = None,
    ) -> str:
        """A guest writes ``text``: build a doc-shaped ``incomingMessageReceived`` and queue it
        ``deliveries`` times in a row (duplicates as Green API redelivery produces). Returns idMessage."""
        if not isinstance(chat_id, str) or not chat_id:
            raise ValueError("chatId must be a non-empty string")
        if not isinstance(text, str):
            raise ValueError("text must be a string")
        if not isinstance(sender_name, str):
            raise ValueError("senderName must be a string")
        if id_message is not None and (not isinstance(id_message, str) or not id_message):
            raise ValueError("idMessage must be a non-empty string")
        if not _is_int(deliveries) or not 1 <= deliveries <= 100:
            raise ValueError("deliveries must be an integer from 1 to 100")
        id_message = id_message or _new_incoming_id()
        now = int(time.time())
        sender_id = sender or chat_id
        if URL_IN_TEXT.search(text):
            message_data: dict[str, Any] = {
                "typeMessage": "extendedTextMessage",
                "extendedTextMessageData": {
                    "text": text,
                    "description": "",
                    "title": "",
                    "jpegThumbnail": "",
                },
            }
        else:
            message_data = {"typeMessage": "textMessage", "textMessageData": {"textMessage": text}}
        body = {
            "typeWebhook": "incomingMessageReceived",
            "instanceData": self._instance_data(),
            "timestamp": now,
            "idMessage": id_message,
            "senderData": {
                "chatId": chat_id,
                "chatName": sender_name,
                "sender": sender_id,
                "senderName": sender_name,
                "senderContactName": sender_name,
            },
            "messageData": message_data,
        }
        journal_item = {
            "type": "incoming",
            "idMessage": id_message,
            "timestamp": now,
            "typeMessage": message_data["typeMessage"],
            "chatId": chat_id,
            "senderId": sender_id,
            "senderName": sender_name,
            "senderContactName": sender_name,
            "textMessage": text,
        }
        if message_data["typeMessage"] == "extendedTextMessage":
            journal_item["extendedTextMessage"] = copy.deepcopy(message_data["extendedTextMessageData"])
        with self._cv:
            self._incoming.append(journal_item)
            if self._settings["incomingWebhook"] == "yes":
                for _ in range(deliveries):
                    self._enqueue(copy.deepcopy(body))
        return id_message

    def inject_outgoing(self, chat_id: str, text: str, id_message: str | None = None) -> str:
        """Staff write ``text`` to ``chat_id`` from the instance's own phone: queue the documented
        ``outgoingMessageReceived`` (the format of an incoming message, ``docs/providers.md`` §1.6;
        sender = the instance's ``wid``) if ``outgoingMessageWebhook`` is "yes". Returns idMessage."""
        if not isinstance(chat_id, str) or not chat_id:
            raise ValueError("chatId must be a non-empty string")
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty string")
        if id_message is not None and (not isinstance(id_message, str) or not id_message):
            raise ValueError("idMessage must be a non-empty string")
        id_message = id_message or _new_outgoing_id()
        body = {
            "typeWebhook": "outgoingMessageReceived",
            "instanceData": self._instance_data(),
            "timestamp": int(time.time()),
            "idMessage": id_message,
            "senderData": {
                "chatId": chat_id,
                "chatName": "",
                "sender": self.wid,
                "senderName": "",
                "senderContactName": "",
            },
            "messageData": {"typeMessage": "textMessage", "textMessageData": {"textMessage": text}},
        }
        with self._cv:
            if self._settings["outgoingMessageWebhook"] == "yes":
                self._enqueue(body)
        return id_message

    def notifications(self) -> dict[str, Any]:
        """Queue, scheduled status events and the push delivery log (for assertions)."""
        with self._cv:
            now = time.monotonic()
            return {
                "mode": "push" if self._settings["webhookUrl"] else "polling",
                "webhook_url": self._settings["webhookUrl"],
                "queue": [n.as_dict() for n in self._queue],
                "scheduled": [{"due_in": round(due - now, 3)} for due, _, _ in sorted(self._sched)],
                "pending_sends": [m["idMessage"] for m in self._pending_sends],
                "deliveries": [dict(d) for d in self._deliveries],
            }

    def deliveries(self) -> list[dict[str, Any]]:
        with self._cv:
            return [dict(d) for d in self._deliveries]

    def sent_messages(self) -> list[dict[str, Any]]:
        """Messages accepted by sendMessage, oldest first, with their current ``statusMessage``."""
        with self._cv:
            return [self._public_outgoing(m) for m in self._outgoing]

    # ------------------------------------------------------------------ lifecycle
    def _on_start(self) -> None:
        self._threads = [
            threading.Thread(target=self._scheduler_loop, name="fake-green-scheduler", daemon=True),
            threading.Thread(target=self._push_loop, name="fake-green-push", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _on_stop(self) -> None:
        with self._cv:
            self._cv.notify_all()
        conn = self._push_conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the push thread blocked in recv
        for t in self._threads:
            t.join(timeout=2)
        self._threads = []

    # ------------------------------------------------------------------ notification plumbing
    def _instance_data(self) -> dict[str, Any]:
        return {"idInstance": int(self.id_instance), "wid": self.wid, "typeInstance": "whatsapp"}

    def _enqueue(self, body: dict[str, Any]) -> None:
        with self._cv:
            self._queue.append(_Notification(next(self._receipt_ids), body, time.time()))
            self._cv.notify_all()

    def _schedule(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cv:
            heapq.heappush(self._sched, (time.monotonic() + delay, next(self._sched_seq), fn))
            self._cv.notify_all()

    def _prune_expired(self) -> None:
        cutoff = time.time() - NOTIFICATION_TTL
        if self._queue and self._queue[0].enqueued_at < cutoff:
            self._queue = [n for n in self._queue if n.enqueued_at >= cutoff]

    def _scheduler_loop(self) -> None:
        stop = self._stop_event
        while not stop.is_set():
            with self._cv:
                now = time.monotonic()
                if not self._sched:
                    self._cv.wait(0.5)
                    continue
                due = self._sched[0][0]
                if due > now:
                    self._cv.wait(min(due - now, 0.5))
                    continue
                _, _, fn = heapq.heappop(self._sched)
                try:
                    fn()
                finally:
                    self._cv.notify_all()

    def _push_loop(self) -> None:
        stop = self._stop_event
        while not stop.is_set():
            with self._cv:
                self._prune_expired()
                url = self._settings["webhookUrl"]
                if not url or not self._queue:
                    self._cv.wait(0.5)
                    continue
                now = time.monotonic()
                if now < self._next_push_at:
                    self._cv.wait(min(self._next_push_at - now, 0.5))
                    continue
                item = self._queue[0]
                generation = self._generation
                token = self._settings["webhookUrlToken"]
                push_auth = self.push_auth
                timeout = self.push_timeout
                item.attempts += 1
                attempt = item.attempts
                body = json.dumps(item.body, ensure_ascii=False).encode("utf-8")
            headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
            if push_auth == "wrong":
                headers["Authorization"] = "Bearer wrong-token"
            elif push_auth is None and token:
                headers["Authorization"] = f"Bearer {token}"
            started = time.monotonic()
            status, error = self._post(url, body, headers, timeout)
            with self._cv:
                if generation != self._generation:
                    continue
                self._deliveries.append(
                    {
                        "time": time.time(),
                        "receiptId": item.receipt_id,
                        "typeWebhook": item.body.get("typeWebhook"),
                        "idMessage": item.body.get("idMessage"),
                        "url": url,
                        "attempt": attempt,
                        "status": status,
                        "error": error,
                        "duration_ms": round((time.monotonic() - started) * 1000, 1),
                    }
                )
                if status == 200:
                    with contextlib.suppress(ValueError):
                        self._queue.remove(item)
                    self._next_push_at = time.monotonic() + MIN_PUSH_INTERVAL
                else:
                    self._next_push_at = time.monotonic() + self.redelivery_delay
                self._cv.notify_all()

    def _post(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> tuple[int | None, str | None]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None, f"invalid webhook url {url!r}"
        conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        try:
            conn = conn_cls(parts.hostname, parts.port, timeout=timeout)
        except Exception as exc:
            return None, f"{type(exc).__name__}: {exc}"
        self._push_conn = conn
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            return resp.status, None
        except Exception as exc:
            return None, f"{type(exc).__name__}: {exc}"
        finally:
            self._push_conn = None
            conn.close()

    # ------------------------------------------------------------------ outgoing messages
    def _public_outgoing(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "outgoing",
            "idMessage": msg["idMessage"],
            "timestamp": msg["timestamp"],
            "statusMessage": msg["statusMessage"],
            "typeMessage": "textMessage",
            "chatId": msg["chatId"],
            "textMessage": msg["textMessage"],
            "sendByApi": True,
        }

    def _dispatch_send(self, msg: dict[str, Any]) -> None:
        """The message leaves the send queue: notifications and scheduled statuses."""
        with self._cv:
            generation = self._generation
            if self._settings["outgoingAPIMessageWebhook"] == "yes":
                self._enqueue(
                    {
                        "typeWebhook": "outgoingAPIMessageReceived",
                        "instanceData": self._instance_data(),
                        "timestamp": int(time.time()),
                        "idMessage": msg["idMessage"],
                        "senderData": {
                            "chatId": msg["chatId"],
                            "chatName": "",
                            "sender": self.wid,
                            "senderName": "",
                            "senderContactName": "",
                        },
                        "messageData": {
                            "typeMessage": "textMessage",
                            "textMessageData": {"textMessage": msg["textMessage"]},
                        },
                    }
                )
            override = self._chat_status.get(msg["chatId"])
            delays = self.status_delays
            if override in FAILURE_STATUSES:
                steps: list[tuple[float, str]] = [(delays[0], override)]
            else:
                stop_at = PROGRESS_STATUSES.index(override) + 1 if override else 3
                steps = list(zip(delays[:stop_at], PROGRESS_STATUSES[:stop_at], strict=True))
            for delay, status in steps:
                self._schedule(delay, self._status_event(msg, status, generation))

    def _status_event(self, msg: dict[str, Any], status: str, generation: int) -> Callable[[], None]:
        def fire() -> None:
            if generation != self._generation:
                return
            msg["statusMessage"] = status
            if status in ALWAYS_SENT_STATUSES or self._settings["outgoingWebhook"] == "yes":
                body: dict[str, Any] = {
                    "typeWebhook": "outgoingMessageStatus",
                    "chatId": msg["chatId"],
                    "instanceData": self._instance_data(),
                    "timestamp": int(time.time()),
                    "idMessage": msg["idMessage"],
                    "status": status,
                }
                if status in FAILURE_STATUSES:
                    body["description"] = FAILURE_STATUSES[status]
                body["sendByApi"] = True
                self._enqueue(body)

        return fire

    # ------------------------------------------------------------------ HTTP API
    def classify(self, req: FakeRequest) -> dict[str, Any]:
        m = ROUTE.match(req.path)
        if not m:
            return {"method_name": None}
        return {"method_name": m.group("method"), "instance": m.group("id")}

    def default_error(self, status: int, req: FakeRequest) -> FakeResponse:
        if status == 466:
            return json_response(466, copy.deepcopy(QUOTA_466_BODY), note="quota")
        if status in (502, 503, 504):
            reason = _REASONS[status]
            return text_response(
                status, _NGINX_HTML.format(code=status, reason=reason), content_type="text/html"
            )
        return _error(status, _REASONS.get(status, "Internal Server Error"))

    def _rate_limited(self, method: str, instance: str = "") -> bool:
        limit = RATE_LIMITS.get(method)
        if limit is None and method.startswith("send"):
            limit = RATE_LIMITS["sendmessage"]
        if limit is None or not self.rate_limits:
            return False
        now = time.monotonic()
        with self._cv:
            window = self._rate.setdefault(f"{instance}:{method}" if instance else method, deque())
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= limit:
                return True
            window.append(now)
            return False

    def handle(self, req: FakeRequest, rule: dict[str, Any] | None) -> FakeResponse:
        m = ROUTE.match(req.path)
        if not m:
            return _error(404, "Not Found")
        id_instance, method, token, extra = m.group("id", "method", "token", "extra")
        if not id_instance.isdigit():
            return _error(400, "Parameter idInstance not an integer")
        if id_instance != self.id_instance and not self.any_instance:
            return _error(403, "Forbidden")
        if not token:
            return _error(400, "Parameter apiTokenInstance not define")
        if not secrets.compare_digest(token.encode(), self.api_token.encode()):
            return _error(401, "Unauthorized")
        name = method.lower()
        route = self._routes().get(name)
        if route is None or req.method not in route[0]:
            # The docs: "404 Not Found - invalid request method used".
            return _error(404, "Not Found")
        if self._rate_limited(name, id_instance if self.any_instance else ""):
            return _error(429, "Too Many Requests", note="rate_limited")
        if name.startswith("send") and self._state in REFUSING_STATES:
            return _error(400, REFUSING_STATES[self._state], note="state")
        return route[1](req, extra)

    def _routes(self) -> dict[str, tuple[tuple[str, ...], Callable[[FakeRequest, str | None], FakeResponse]]]:
        return {
            "sendmessage": (("POST",), self._api_send_message),
            "getstateinstance": (("GET",), self._api_get_state),
            "getsettings": (("GET",), self._api_get_settings),
            "setsettings": (("POST",), self._api_set_settings),
            "receivenotification": (("GET",), self._api_receive),
            "deletenotification": (("DELETE",), self._api_delete),
            "lastincomingmessages": (("GET",), self._api_last_incoming),
            "lastoutgoingmessages": (("GET",), self._api_last_outgoing),
            "checkwhatsapp": (("POST",), self._api_check_whatsapp),
            "reboot": (("GET",), self._api_reboot),
        }

    def _api_send_message(self, req: FakeRequest, extra: str | None) -> FakeResponse:
        if req.json_error is not None:
            return _json_syntax_error(req)
        body = req.json if req.has_json else {}
        if not isinstance(body, dict):
            return _error(400, "bad request data", note="validation")
        chat_id = body.get("chatId")
        if chat_id is None:
            return _validation("'chatId' is required")
        if not isinstance(chat_id, str):
            return _validation("'chatId' must be a string")
        if not CHAT_ID.match(chat_id):
            return _validation(
                "'chatId' must be one of the next formats: 'phone_number@c.us' or 'group_id@g.us'"
            )
        message = body.get("message")
        if message is None:
            return _validation("'message' is required")
        if not isinstance(message, str):
            return _validation("'message' must be a string")
        if not message:
            return _validation("'message' is not allowed to be empty")
        if len(message) > 20000:
            return _validation("'message' length must be less than or equal to 20000 characters long")
        checks: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
            ("quotedMessageId", lambda v: isinstance(v, str), "must be a string"),
            ("archiveChat", lambda v: isinstance(v, bool), "must be a boolean"),
            ("linkPreview", lambda v: isinstance(v, bool), "must be a boolean"),
            ("typingTime", _is_int, "must be an integer"),
            ("typePreview", lambda v: v in ("large", "small"), "must be one of [large, small]"),
            ("customPreview", lambda v: isinstance(v, dict), "must be of type object"),
        )
        for key, ok, text in checks:
            if key in body and not ok(body[key]):
                return _validation(f"'{key}' {text}")
        now = time.time()
        msg = {
            "idMessage": _new_outgoing_id(),
            "chatId": chat_id,
            "textMessage": message,
            "timestamp": int(now),
            "sent_at": now,
            "statusMessage": "pending",
        }
        with self._cv:
            self._outgoing.append(msg)
            if self._state == "authorized":
                self._dispatch_send(msg)
            else:
                # Messages are kept in the send queue until the instance is authorized again.
                self._pending_sends.append(msg)
        return json_response(200, {"idMessage": msg["idMessage"]})

    def _api_get_state(self, req: FakeRequest, extra: str | None) -> FakeResponse:
        return json_response(200, {"stateInstance": self._state})

    def _api_get_settings(self, req: FakeRequest, extra: str | None) -> FakeResponse:
        return json_response(200, self.settings())

    def _api_set_settings(self, req: FakeRequest, extra: str | None) -> FakeResponse:
        if req.json_error is not None:
            return _json_syntax_error(req)
        body = req.json if req.has_json else {}
        if not isinstance(body, dict):
            return _error(400, "bad request data", note="validation")
        updates: dict[str, Any] = {}
        for key, value in body.items():
            if key in YES_NO_SETTINGS:
                if value not in ("yes", "no"):
                    return _validation(f"'{key}' must be one of [yes, no]")
                updates[key] = value
            elif key in ("webhookUrl", "webhookUrlToken"):
                if not isinstance(value, str):
                    return _validation(f"'{key}' must be a string")
                if key == "webhookUrl" and value and not re.match(r"^https?://[^\s/]+", value):
                    return _validation("'webhookUrl' must be a valid uri")
                updates[key] = value
            elif key == "delaySendMessagesMilliseconds":
                if not _is_int(value):
                    return _validation(f"'{key}' must be a number")
                if not 500 <= value <= 600000:
                    return _validation(
                        f"'{key}' must be greater than or equal to 500 and less than or equal to 600000"
                    )
                updates[key] = value
        if not updates:
            return _validation("'value' must have at least 1 key")
        with self._cv:
            if "webhookUrl" in updates and updates["webhookUrl"] != self._settings["webhookUrl"]:
                self._next_push_at = 0.0
            self._settings.update(updates)
            self._cv.notify_all()
        return json_response(200, {"saveSettings": True})

    def _api_receive(self, req: FakeRequest, extra: str | None) -> FakeResponse:
        raw = req.query_one("receiveTimeout")
        timeout = 5.0
        if raw:
            try:
                timeout = float(raw)
            except ValueError:
                return _validation("'receiveTimeout' must be a number")
        timeout = min(max(timeout, 5.0), 60.0)
        deadline = time.monotonic() + timeout * self.poll_scale
        with self._cv:
            while True:
                self._prune_expired()
                if self._queue and not self._settings["webhookUrl"]:
                    head = self._queue[0]
                    return json_response(200, {"receiptId": head.receipt_id, "body": head.body})
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop_event.is_set():
                    return FakeResponse(200, b"null", {"Content-Type": "application/json"})
                self._cv.wait(min(remaining, 0.5))

    def _api_delete(self, req: FakeRequest, extra: str | None) -> FakeResponse:
        raw: Any = extra
        if not raw and req.has_json:
            raw = req.json  # the async SDK sends the receiptId as the JSON body
        try:
            receipt_id = int(str(raw))
        except ValueError:
            return _validation("'receiptId' must be a number")
        with self._cv:
            for item in self._queue:
                if item.receipt_id == receipt_id:
                    self._queue.remove(item)
                    self._cv.notify_all()
                    return json_response(200, {"result": True})
        return json_response(200, {"result": False})

    def _minutes(self, req: FakeRequest) -> float | FakeResponse:
        raw: Any = req.query_one("minutes")
        if raw is None and isinstance(req.json, dict):
            raw = req.json.get("minutes")  # the async SDK sends it as a JSON body
        if raw in (None, ""):
            return 1440.0
        try:
            return float(raw)
        except (TypeError, ValueError):
            return _validation("'minutes' must be a number")

    def _api_last_incoming(self, req: FakeRequest, extra: str | None) -> FakeResponse:
        minutes = self._minutes(req)
        if isinstance(minutes, FakeResponse):
            return minutes
        cutoff = time.time() - minutes * 60
        with self._cv:
            items = [copy.deepcopy(m) for m in reversed(self._incoming) if m["timestamp"] >= cutoff]
        return json_response(200, items)

    def _api_last_outgoing(self, req: FakeRequest, extra: str | None) -> FakeResponse:
        minutes = self._minutes(req)
        if isinstance(minutes, FakeResponse):
            return minutes
        cutoff = time.time() - minutes * 60
        with self._cv:
            items = [self._public_outgoing(m) for m in reversed(self._outgoing) if m["sent_at"] >= cutoff]
        return json_response(200, items)

    def _api_check_whatsapp(self, req: FakeRequest, extra: str | None) -> FakeResponse:
        body = req.json if isinstance(req.json, dict) else {}
        phone = body.get("phoneNumber")
        if phone is None:
            return _validation("'phoneNumber' is required")
        if not _is_int(phone):
            return _validation("'phoneNumber' must be a number")
        exists = self._chat_status.get(f"{phone}@c.us") != "noAccount"
        return json_response(200, {"existsWhatsapp": exists})

    def _api_reboot(self, req: FakeRequest, extra: str | None) -> FakeResponse:
        self.set_state("starting")
        generation = self._generation

        def back() -> None:
            if generation == self._generation and self._state == "starting":
                self.set_state("authorized")

        self._schedule(1.0, back)
        return json_response(200, {"isReboot": True})

    # ------------------------------------------------------------------ control API
    def control(self, req: FakeRequest, sub: str) -> FakeResponse | None:
        m = req.method
        try:
            if sub == "inbound" and m == "POST":
                body = req.control_json()
                id_message = self.inject_inbound(
                    body.get("chatId"),  # type: ignore[arg-type]
                    body.get("text"),  # type: ignore[arg-type]
                    sender_name=body.get("senderName", "Guest"),
                    id_message=body.get("idMessage"),
                    deliveries=body.get("deliveries", 1),
                    sender=body.get("sender"),
                )
                return json_response(200, {"idMessage": id_message})
            if sub == "outgoing" and m == "POST":
                body = req.control_json()
                id_message = self.inject_outgoing(
                    body.get("chatId"),  # type: ignore[arg-type]
                    body.get("text"),  # type: ignore[arg-type]
                    id_message=body.get("idMessage"),
                )
                return json_response(200, {"idMessage": id_message})
            if sub == "notifications" and m == "GET":
                return json_response(200, self.notifications())
            if sub == "state":
                if m == "POST":
                    self.set_state(req.control_json().get("stateInstance"))  # type: ignore[arg-type]
                return json_response(200, {"stateInstance": self._state})
            if sub == "chat-status" and m == "POST":
                body = req.control_json()
                self.set_chat_status(body.get("chatId"), body.get("status"))  # type: ignore[arg-type]
                return json_response(200, {"chatId": body.get("chatId"), "status": body.get("status")})
            if sub == "config":
                if m == "POST":
                    body = req.control_json()
                    known = {
                        "redelivery_delay",
                        "status_delays",
                        "webhook_url",
                        "webhook_token",
                        "push_timeout",
                        "poll_scale",
                        "rate_limits",
                        "push_auth",
                    }
                    unknown = sorted(set(body) - known)
                    if unknown:
                        raise ControlError(f"unknown config field(s): {', '.join(unknown)}")
                    return json_response(200, self.configure(**body))
                if m == "GET":
                    return json_response(200, self.config())
            if sub == "sent" and m == "GET":
                return json_response(200, self.sent_messages())
        except (ValueError, TypeError) as exc:
            raise ControlError(str(exc)) from exc
        return None
