"""Acknowledge, then quarantine (issue 6 item 1): an authenticated notification that cannot be
parsed or stored is kept as a dead letter and answered 200, so Green API's in-order queue for the
hotel moves on; the next good message of the same hotel is stored right away."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import DataError, connection
from prometheus_client import REGISTRY

from messaging import notifications
from messaging.models import Guest, Message, ReplyJob
from messaging.notifications import read_body
from reliability.models import DeadLetter
from tests.messaging import payloads

URL = "/webhooks/green-api/"
pytestmark = pytest.mark.django_db


def _quarantined(reason: str) -> float:
    return REGISTRY.get_sample_value("hotelbot_webhook_quarantined_total", {"reason": reason}) or 0.0


def _replies_quarantined() -> float:
    return REGISTRY.get_sample_value("hotelbot_replies_total", {"result": "quarantined"}) or 0.0


def _incoming(**changes: Any) -> dict[str, Any]:
    body = payloads.incoming_text(id_message="BAD1")
    for path, value in changes.items():
        node = body
        *parents, last = path.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    return body


def _raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _status(status: str) -> bytes:
    return _raw(payloads.outgoing_status(id_message="S1", status=status))


BAD_INPUTS: list[tuple[str, bytes, str, str]] = [
    # (case, body, reason category, field the reason names)
    ("malformed json", b'{"typeWebhook": "incomingMessageReceived", ', "not_json", ""),
    ("not json at all", b"hello", "not_json", ""),
    ("empty body", b"", "not_json", ""),
    ("not utf-8", b'{"typeWebhook": "\xff\xfe"}', "not_json", ""),
    ("NaN literal", _raw(_incoming()).replace(b'"timestamp": ', b'"timestamp": NaN, "x": '), "not_json", ""),
    ("raw NUL byte", _raw(_incoming()).replace(b"check-out", b"check\x00out"), "not_json", ""),
    ("deep nesting", b'{"typeWebhook": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not_json", ""),
    ("a list, not an object", b"[1, 2]", "not_object", ""),
    ("no typeWebhook", b'{"instanceData": {"idInstance": 1101000001}}', "missing", "typeWebhook"),
    (
        "textMessageData is a string",
        _raw(_incoming(messageData__textMessageData="hi")),
        "wrong_type",
        "messageData.textMessageData",
    ),
    (
        "textMessage is a number",
        _raw(_incoming(messageData__textMessageData={"textMessage": 7})),
        "wrong_type",
        "textMessage",
    ),
    ("senderData is a list", _raw(_incoming(senderData=["x"])), "wrong_type", "senderData"),
    (
        "idInstance is a bool",
        _raw(_incoming(instanceData__idInstance=True)),
        "wrong_type",
        "instanceData.idInstance",
    ),
    ("timestamp 10^15", _raw(_incoming(timestamp=10**15)), "out_of_range", "timestamp"),
    (
        "timestamp 1e400",
        _raw(_incoming(timestamp=1)).replace(b'"timestamp": 1', b'"timestamp": 1e400'),
        "out_of_range",
        "timestamp",
    ),
    ("negative timestamp", _raw(_incoming(timestamp=-5)), "out_of_range", "timestamp"),
    ("timestamp as text", _raw(_incoming(timestamp="1588091580")), "wrong_type", "timestamp"),
    ("idMessage too long", _raw(_incoming(idMessage="A" * 65)), "too_long", "idMessage"),
    (
        "chatId too long",
        _raw(_incoming(senderData__chatId="7" * 80 + "@c.us")),
        "too_long",
        "senderData.chatId",
    ),
    (
        "idInstance too long",
        _raw(_incoming(instanceData__idInstance="9" * 40)),
        "too_long",
        "instanceData.idInstance",
    ),
    ("typeMessage too long", _raw(_incoming(messageData__typeMessage="x" * 41)), "too_long", "typeMessage"),
    # NUL and lone surrogates in free text (text, sender name) are cleaned, not quarantined:
    # test_webhook_clean_input.py. In an identifier they are quarantined.
    ("NUL in idMessage", _raw(_incoming(idMessage="AB\u0000C")), "unsafe_text", "idMessage"),
    ("lone surrogate in chatId", _raw(_incoming(senderData__chatId="\udc00@c.us")), "unsafe_text", "chatId"),
    ("unknown status value", _status("teleported"), "unknown_value", "status"),
    ("unknown instance state", _raw(payloads.state_changed("exploded")), "unknown_value", "stateInstance"),
    ("unknown instance id", _raw(_incoming(instanceData__idInstance=999)), "unknown_instance", ""),
]


@pytest.mark.parametrize(("case", "body", "reason", "field"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_notification_is_quarantined_with_200_and_the_next_message_is_stored(
    webhook_client, hotel, case, body, reason, field
):
    before = _quarantined(reason)
    replies_before = _replies_quarantined()

    resp = webhook_client.post(URL, data=body, content_type="application/json")

    assert resp.status_code == 200, resp.content
    assert resp.json() == {"status": "quarantined"}
    letter = DeadLetter.objects.get()
    assert (letter.kind, letter.status, letter.reason_code) == ("webhook_quarantine", "pending", reason)
    assert field in letter.reason
    assert letter.raw_size == len(body)
    assert "\x00" not in letter.raw
    letter.raw.encode("utf-8")  # storable: no lone surrogates
    assert _quarantined(reason) == before + 1
    guest_message = isinstance(letter.payload, dict) and (
        letter.payload.get("typeWebhook") == "incomingMessageReceived"
    )
    assert _replies_quarantined() == replies_before + (1 if guest_message else 0)
    assert not Message.objects.exists()
    # Nothing waits behind it: the hotel's next message is stored at once.
    good = webhook_client.post(URL, payloads.incoming_text(id_message="GOOD"), format="json")
    assert good.json() == {"status": "stored"}
    assert ReplyJob.objects.filter(inbound__provider_message_id="GOOD").exists()


def test_body_over_the_limit_is_quarantined_from_its_first_bytes(webhook_client, hotel, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 4096
    settings.DEAD_LETTER_RAW_MAX_CHARS = 100
    body = _raw(_incoming(messageData__textMessageData={"textMessage": "x" * 10_000}))

    resp = webhook_client.post(URL, data=body, content_type="application/json")

    assert resp.json() == {"status": "quarantined"}
    letter = DeadLetter.objects.get()
    assert letter.reason_code == "too_large"
    assert letter.raw == body[:100].decode()
    assert (letter.raw_size, letter.raw_truncated, letter.payload) == (len(body), True, None)
    assert webhook_client.post(URL, payloads.incoming_text(id_message="OK"), format="json").json() == {
        "status": "stored"
    }


def test_a_body_over_djangos_upload_limit_but_within_ours_is_stored(webhook_client, hotel, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = payloads.incoming_text(id_message="BIG", text="ü" * 5000)
    resp = webhook_client.post(URL, body, format="json")
    assert resp.json() == {"status": "stored"}
    assert Message.objects.get(provider_message_id="BIG").text == "ü" * 5000


class _CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.requested = 0

    def read(self, size: int | None = -1) -> bytes:
        assert size is not None, "the body must never be read without a bound"
        assert size >= 0, "the body must never be read without a bound"
        self.requested += size
        return super().read(size)


def test_read_body_never_reads_past_the_limit():
    huge = _CountingStream(b"x" * 5_000_000)
    body = read_body(huge, content_length=5_000_000, limit=1_000_000, keep=64, drain=0)
    assert (body.over_limit, body.size, body.data, huge.requested) == (True, 5_000_000, b"x" * 64, 64)
    # A body that lies about its length (or has none declared) is still read only to limit + 1.
    liar = _CountingStream(b"y" * 5_000_000)
    body = read_body(liar, content_length=10, limit=1_000, keep=64, drain=0)
    assert (body.over_limit, len(body.data), liar.requested) == (True, 64, 1_001)


class _ChunkCountingStream(_CountingStream):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.largest = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.largest = max(self.largest, len(chunk))
        return chunk


def test_read_body_drains_an_oversize_body_up_to_the_bound_in_small_chunks():
    """The sender must be able to finish writing and read our 200 (tested under gunicorn in
    tests/e2e/test_webhook_gunicorn.py); the rest is read in bounded chunks and never kept."""
    stream = _ChunkCountingStream(b"x" * 3_000_000)
    body = read_body(stream, content_length=3_000_000, limit=1_000_000, keep=64, drain=4_000_000)
    assert (body.over_limit, body.size, body.data) == (True, 3_000_000, b"x" * 64)
    assert stream.tell() == 3_000_000  # read to its end
    assert stream.largest <= notifications.DRAIN_CHUNK
    # Declared larger than the drain bound: not read on (the server closes the connection).
    big = _CountingStream(b"x" * 5_000_000)
    body = read_body(big, content_length=5_000_000, limit=1_000_000, keep=64, drain=4_000_000)
    assert (body.size, big.requested) == (5_000_000, 64)
    # No length declared: read on to the bound at most.
    liar = _CountingStream(b"y" * 5_000_000)
    body = read_body(liar, content_length=None, limit=1_000, keep=64, drain=2_000_000)
    assert (body.over_limit, body.size, liar.tell()) == (True, 2_000_000, 2_000_000)


def test_read_body_takes_the_drain_bound_from_settings(settings):
    settings.WEBHOOK_DRAIN_MAX_BYTES = 10_000
    small = _CountingStream(b"z" * 9_000)
    assert read_body(small, content_length=9_000, limit=1_000, keep=8).size == 9_000
    assert small.tell() == 9_000
    settings.WEBHOOK_DRAIN_MAX_BYTES = 0
    untouched = _CountingStream(b"z" * 9_000)
    read_body(untouched, content_length=9_000, limit=1_000, keep=8)
    assert untouched.tell() == 8


def test_long_free_text_is_cut_and_stored_not_quarantined(webhook_client, hotel):
    body = payloads.incoming_text(id_message="LONG", text="t" * 70_000, sender_name="N" * 500)
    assert webhook_client.post(URL, body, format="json").json() == {"status": "stored"}
    message = Message.objects.get(provider_message_id="LONG")
    assert message.text == "t" * 65_536
    assert Guest.objects.get().display_name == "N" * 200
    long_description = payloads.outgoing_status(id_message="S9", status="failed", description="d" * 5000)
    assert webhook_client.post(URL, long_description, format="json").json() == {"status": "status_deferred"}
    assert not DeadLetter.objects.exists()


def test_quarantine_never_stores_the_webhook_token(webhook_client, hotel, settings, caplog):
    token = settings.GREEN_API_WEBHOOK_TOKEN
    body = _incoming(timestamp=10**15, idMessage=f"id-{token}")
    body["leak"] = {f"key {token}": token}
    resp = webhook_client.post(URL, data=_raw(body), content_type="application/json")
    assert resp.json() == {"status": "quarantined"}
    letter = DeadLetter.objects.get()
    stored = " ".join([letter.raw, letter.reason, letter.subject, json.dumps(letter.payload)])
    assert token not in stored
    assert "id-***" in letter.raw  # masking.MASK
    assert all(token not in record.getMessage() for record in caplog.records)


@contextmanager
def _failing_insert(table: str, error: Callable[[], Exception]) -> Iterator[None]:
    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        # PostgreSQL's one statement: the guest's lock, then WITH ... (messaging/services/inbound_sql.py)
        statement = sql.lstrip().upper().startswith(("INSERT", "WITH", "SELECT PG_ADVISORY_XACT_LOCK"))
        if statement and table in sql:
            raise error()
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield


def test_storage_error_on_valid_input_is_quarantined_and_leaves_nothing_half_stored(webhook_client, hotel):
    body = payloads.incoming_text(id_message="REFUSED", sender_name="New Guest")
    with _failing_insert(
        '"messaging_message"', lambda: DataError("value too long for type character varying(64)")
    ):
        resp = webhook_client.post(URL, body, format="json")
    assert resp.status_code == 200
    assert resp.json() == {"status": "quarantined"}
    letter = DeadLetter.objects.get()
    assert (letter.reason_code, letter.subject) == ("storage_error", str(payloads.INSTANCE))
    assert "REFUSED" in letter.raw
    assert not Guest.objects.exists()  # the failed transaction was rolled back before the quarantine row
    assert webhook_client.post(URL, body, format="json").json() == {"status": "stored"}


def test_bad_token_stays_401_and_stores_nothing(hotel):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer wrong")
    resp = client.post(URL, data=b"{not json", content_type="application/json")
    assert resp.status_code == 401
    assert not DeadLetter.objects.exists()
